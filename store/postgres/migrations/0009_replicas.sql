-- Live server replicas: each records itself every few seconds, so that
-- every replica knows how many share the load (per-key throttling is
-- divided among them).
CREATE TABLE replicas (
	id      TEXT COLLATE "C" PRIMARY KEY,
	seen_at BIGINT NOT NULL
);
