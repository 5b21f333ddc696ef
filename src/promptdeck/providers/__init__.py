"""One module per upstream API, each turning its stream into normalized events."""
