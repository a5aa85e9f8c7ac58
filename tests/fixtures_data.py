"""Data fixtures (owned by the data module; see tests/test_data_*.py)."""
