"""Persistence: one index directory holding vectors (FAISS), BM25 arrays, SQLite records
and a manifest, written as numbered versions and swapped in atomically."""
