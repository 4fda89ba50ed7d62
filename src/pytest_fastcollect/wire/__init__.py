"""What every process speaks: framing and the pydantic protocol.

PYTEST_DONT_REWRITE. Imports nothing else of ours.
"""
