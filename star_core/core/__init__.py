"""The vocabulary every other part shares, and nothing else: the run settings (`config`), the named
presets, the enums for statuses, kinds and phases (`states`), the error types, the embedded models'
names, and the process primitives the store and the workers both need. Imports no other part.
"""
