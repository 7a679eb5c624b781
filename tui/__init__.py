"""disparo's terminal UI (Textual): a client of the store, started by `disparo tui`."""
