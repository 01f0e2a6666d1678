"""The built-in `newsletter` job: a newsletter for a date range from the selected feeds."""
