"use strict";
// The web form. Article text is only ever inserted as text nodes (textContent), never as HTML.

const $ = (id) => document.getElementById(id);
const form = $("ask-form");
const input = $("question");
const askButton = $("ask-button");
const results = $("results");
const articleList = $("articles");
const moreArticles = $("more-articles");
const reader = $("reader");
const filters = $("filters");
const PAGE_SIZE = 50;
/** Filter inputs -> the /ask field each sets (also their names in the page's URL). */
const FILTER_FIELDS = { source: "source", after: "published_after", before: "published_before" };
let articlesShown = 0;

/** An element with an optional class and text content. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, className, onClick) {
  const node = el("button", className, label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

/** The url if it is a web address, else null (no javascript: or data: links). */
function webUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function externalLink(url, label) {
  const link = el("a", "", label);
  link.href = url;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  return link;
}

/** The article title, linked to its url when it has one. */
function title(item) {
  const url = item.url && webUrl(item.url);
  const node = url ? externalLink(url, item.title) : el("cite", "", item.title);
  node.classList.add("title");
  return node;
}

/** ``text`` (starting at article offset ``base``) with the ``spans`` marked; a span's
 * ``inner`` span (an answer inside its sentence) is marked inside it. */
function highlighted(text, base, spans) {
  const fragment = document.createDocumentFragment();
  let cursor = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    const from = span.start - base;
    const to = span.end - base;
    if (from < cursor || to > text.length || from >= to) continue;
    const mark = el("mark", span.kind);
    const inside = text.slice(from, to);
    mark.append(span.inner ? highlighted(inside, span.start, [span.inner]) : inside);
    fragment.append(text.slice(cursor, from), mark);
    cursor = to;
  }
  fragment.append(text.slice(cursor));
  return fragment;
}

/** An answer as a span to mark: its sentence, with the answer itself marked inside. */
function answerSpan(answer, best) {
  const kind = best ? "best" : "also";
  const inner = { start: answer.start, end: answer.end, kind };
  const context = answer.context;
  if (!context || (context.start === answer.start && context.end === answer.end)) return inner;
  return { start: context.start, end: context.end, kind: "sentence", inner };
}

/** The answers found in a passage, as spans to mark (the best one stands out). */
function answerSpans(passage, answers) {
  return answers
    .filter((answer) => answer.passage_id === passage.passage_id)
    .map((answer) => answerSpan(answer, answer === answers[0]));
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `The service answered with an error (${response.status}).`);
  }
  return body;
}

function setBusy(busy) {
  results.setAttribute("aria-busy", String(busy));
  form.classList.toggle("busy", busy);
  askButton.disabled = busy;
  askButton.querySelector(".label").textContent = busy ? "Asking…" : "Ask";
  if (busy) results.replaceChildren(el("p", "status", "Searching the articles…"));
}

function showError(message) {
  const box = el("p", "card error", message);
  box.setAttribute("role", "alert");
  results.replaceChildren(box);
}

/** The filters set in the form, by input name (empty ones left out). */
function activeFilters() {
  const set = {};
  for (const name of Object.keys(FILTER_FIELDS)) {
    const value = $(name).value.trim();
    if (value) set[name] = value;
  }
  return set;
}

function showFilterCount() {
  const count = Object.keys(activeFilters()).length;
  filters.querySelector("summary").textContent = count ? `Filters (${count} on)` : "Filters";
}

async function ask(question) {
  setBusy(true);
  const chosen = activeFilters();
  const body = { question, top_k: 5 };
  for (const [name, value] of Object.entries(chosen)) body[FILTER_FIELDS[name]] = value;
  try {
    const result = await getJSON("/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    showResult(result, Object.keys(chosen).length > 0);
    history.replaceState(null, "", `?${new URLSearchParams({ q: question, ...chosen })}`);
  } catch (error) {
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

function showResult(result, filtered) {
  const best = result.answers[0];
  const bestPassage = best && result.passages.find((p) => p.passage_id === best.passage_id);
  const nodes = [
    best ? answerCard(best, bestPassage, result.answers) : notFoundCard(result, filtered),
  ];
  const others = result.passages.filter((p) => p !== bestPassage);
  if (others.length) {
    nodes.push(el("h2", "section-title", best ? "Other cited passages" : "Closest passages"));
    const list = el("ol", "passages");
    list.append(...others.map((passage) => passageCard(passage, result.answers)));
    nodes.push(list);
  }
  results.replaceChildren(...nodes);
}

function answerCard(best, passage, answers) {
  const card = el("article", best.unsure ? "card answer unsure" : "card answer");
  const head = el("div", "card-head");
  const score = el("span", "score", `${Math.round(best.score * 100)}% confidence`);
  score.title = "Calibrated probability that this answer is right";
  head.append(el("h2", "", best.unsure ? "Possible answer" : "Answer"), score);
  const quote = el("blockquote", "passage");
  quote.append(
    passage
      ? highlighted(passage.text, passage.start, answerSpans(passage, answers))
      : el("mark", "best", best.text),
  );
  const answerText = el("p", "answer-text", best.text);
  card.append(head, answerText);
  if (best.unsure) {
    card.append(el("p", "unsure-note", "Low confidence: check it against its sentence below."));
  }
  card.append(quote, citation(best, answerSpan(best, true)));
  return card;
}

function notFoundCard(result, filtered) {
  const card = el("article", "card not-found");
  const where = filtered ? "the articles the filters allow" : "the indexed articles";
  card.append(
    el("h2", "", "Not found in these articles"),
    el(
      "p",
      "",
      result.passages.length
        ? `No passage in ${where} answers this confidently. ` +
            "The closest passages are below; rephrasing the question may help."
        : `No passage in ${where} matches this question.`,
    ),
  );
  if (filtered) {
    const again = button("Ask again without filters", "secondary", () => {
      clearFilters();
      ask(result.question);
    });
    card.append(again);
  }
  return card;
}

function clearFilters() {
  for (const name of Object.keys(FILTER_FIELDS)) $(name).value = "";
  showFilterCount();
}

function passageCard(passage, answers) {
  const card = el("li", "card passage-card");
  const head = el("div", "card-head");
  head.append(title(passage), el("span", "relevance", `relevance ${passage.score.toFixed(2)}`));
  const text = el("p", "passage clamped");
  text.append(highlighted(passage.text, passage.start, answerSpans(passage, answers)));
  const toggle = button("Show whole passage", "link-button", () => {
    const clamped = text.classList.toggle("clamped");
    toggle.textContent = clamped ? "Show whole passage" : "Show less";
    toggle.setAttribute("aria-expanded", String(!clamped));
  });
  toggle.setAttribute("aria-expanded", "false");
  const actions = el("p", "actions");
  actions.append(
    toggle,
    button("Read in full article", "link-button", () =>
      openArticle(passage.article_id, { start: passage.start, end: passage.end, kind: "range" }),
    ),
  );
  card.append(head, text, actions);
  return card;
}

/** The source line of an answer: title (linked), and a way to read it in context. */
function citation(answer, span) {
  const line = el("p", "cite");
  line.append(
    "Source: ",
    title(answer),
    " · ",
    button("Read in full article", "link-button", () => openArticle(answer.article_id, span)),
  );
  return line;
}

/** Show an article in the reader, with ``span`` (if any) marked and scrolled into view. */
async function openArticle(articleId, span) {
  let article;
  try {
    article = await getJSON(`/articles/${encodeURIComponent(articleId)}`);
  } catch (error) {
    showError(error.message);
    return;
  }
  $("reader-title").textContent = article.title;
  const meta = $("reader-meta");
  meta.replaceChildren(
    [article.source, article.published, article.dateline].filter(Boolean).join(" · "),
  );
  const url = article.url && webUrl(article.url);
  if (url) meta.append(meta.textContent ? " · " : "", externalLink(url, "original ↗"));
  const text = $("reader-text");
  text.replaceChildren(highlighted(article.text, 0, span ? [span] : []));
  reader.showModal();
  text.scrollTop = 0;
  text.querySelector("mark")?.scrollIntoView({ block: "center" });
}

function articleItem(article) {
  const item = el("li");
  item.append(button(article.title, "link-button article-title", () => openArticle(article.id)));
  const passages = `${article.chunks} passage${article.chunks === 1 ? "" : "s"}`;
  const details = [article.source, article.published, passages];
  const meta = el("span", "meta", details.filter(Boolean).join(" · "));
  const url = article.url && webUrl(article.url);
  if (url) meta.append(" · ", externalLink(url, "original ↗"));
  item.append(meta);
  return item;
}

/** Offer the sources of the listed articles as choices for the source filter. */
function offerSources(articles) {
  const list = $("sources");
  const known = new Set([...list.options].map((option) => option.value));
  for (const source of articles.map((article) => article.source)) {
    if (!source || known.has(source)) continue;
    known.add(source);
    const option = el("option");
    option.value = source;
    list.append(option);
  }
}

async function loadArticles() {
  try {
    const page = await getJSON(`/articles?offset=${articlesShown}&limit=${PAGE_SIZE}`);
    articleList.append(...page.articles.map(articleItem));
    offerSources(page.articles);
    articlesShown += page.articles.length;
    $("articles-heading").textContent = `Indexed articles (${page.total})`;
    if (!page.total) articleList.replaceChildren(el("li", "meta", "No articles indexed yet."));
    moreArticles.hidden = articlesShown >= page.total;
  } catch (error) {
    articleList.append(el("li", "error", `The articles could not be listed: ${error.message}`));
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (question) {
    ask(question);
  } else {
    showError("Type a question first.");
    input.focus();
  }
});
moreArticles.addEventListener("click", loadArticles);
filters.addEventListener("input", showFilterCount);
$("clear-filters").addEventListener("click", () => {
  clearFilters();
  $("source").focus();
});
$("reader-close").addEventListener("click", () => reader.close());
reader.addEventListener("click", (event) => {
  if (event.target === reader) reader.close();
});

loadArticles();
const linkedParams = new URLSearchParams(location.search);
for (const name of Object.keys(FILTER_FIELDS)) $(name).value = linkedParams.get(name) || "";
filters.open = Object.keys(activeFilters()).length > 0;
showFilterCount();
const linked = linkedParams.get("q");
if (linked && linked.trim()) {
  input.value = linked;
  ask(linked.trim());
}
