"""Kafka at the edges: the sources the flows read, the producers and sinks they write
through, and the watch that keeps every client alive across a broker restart."""
