"""A small Python client and command line for the five functions (used by `make demo`)."""

from client.api import JobQueueClient, JobQueueHTTPError

__all__ = ["JobQueueClient", "JobQueueHTTPError"]
