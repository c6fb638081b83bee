"""The model zoo: importing this package registers every architecture."""
from tfsr.models import slwsr  # noqa: F401
