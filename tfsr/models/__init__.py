"""The model zoo: importing this package registers every architecture."""
from tfsr.models import hfdn, lfn, litesrnet, rfdn, slwsr  # noqa: F401
