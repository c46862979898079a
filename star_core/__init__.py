"""STaR Studio engine: tasks, models, the STaR loop and its DuckDB store.

This package never imports streamlit: the pages call into it, not the reverse.
"""

__version__ = "0.1.0"
