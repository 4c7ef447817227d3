"""gemsight-hq: the chain's headquarters. Consumes the stores' reports from the MQTT broker into
PostgreSQL and serves the chain's page (stores, open incidents, devices down, model versions, counts)."""
