"""Storage: portable tables, engine, migrations."""
