"""The job queue core: schema, lifecycle operations and the runner. Imports no Flask."""
