"""The knowledge base: collections, ingestion (parsing and chunking), stores, retrieval and answers."""

__all__: list[str] = []
