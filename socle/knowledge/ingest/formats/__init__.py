"""One parser per format; each is a generator of blocks (and attachments) over a :class:`Source`."""

__all__: list[str] = []
