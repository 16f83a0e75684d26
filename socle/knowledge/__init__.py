"""The knowledge base: collections with access lists, document ingestion, hybrid search and answers
with verifiable citations. See docs/knowledge.md."""

__all__: list[str] = []
