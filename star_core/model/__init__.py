"""The language model: loading (embedded, local, hub, GGUF), the shared-prefix decoder, fine-tuning
with its resumable state, and running on several devices (`distributed/`). The only part that imports
torch at module level.
"""
