"""What the console's assistant keeps for its users: chat history and feedback on answers.

Both are personal data: the texts (conversation titles, messages, feedback comments) are sealed with
AES-256-GCM (:mod:`socle.assistant.sealing`) before they reach the database. They sit beside the
knowledge base and governance in the layering: they use storage and the audit log, the gateway uses them.
"""

__all__: list[str] = []
