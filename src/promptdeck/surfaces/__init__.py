"""One module per wire dialect, plus the admin API; they parse and encode, nothing more."""
