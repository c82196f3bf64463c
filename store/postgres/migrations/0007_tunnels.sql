-- Live tunnels of Instance Connect Endpoints, counted against each
-- endpoint's connection limit across all of its processes. A process that
-- goes silent (it died) stops counting once its seen_at is stale.
CREATE TABLE endpoint_processes (
	endpoint_id TEXT COLLATE "C" NOT NULL,
	process_id  TEXT COLLATE "C" NOT NULL,
	seen_at     BIGINT NOT NULL,
	PRIMARY KEY (endpoint_id, process_id)
);

CREATE TABLE endpoint_tunnels (
	id          TEXT COLLATE "C" PRIMARY KEY,
	endpoint_id TEXT COLLATE "C" NOT NULL,
	process_id  TEXT COLLATE "C" NOT NULL,
	opened_at   BIGINT NOT NULL,
	detail      BYTEA NOT NULL
);
CREATE INDEX endpoint_tunnels_by_process ON endpoint_tunnels (endpoint_id, process_id);
