-- Live tunnels of Instance Connect Endpoints, counted against each
-- endpoint's connection limit across all of its processes. A process that
-- goes silent (it died) stops counting once its seen_at is stale.
CREATE TABLE endpoint_processes (
	endpoint_id TEXT NOT NULL,
	process_id  TEXT NOT NULL,
	seen_at     INTEGER NOT NULL,
	PRIMARY KEY (endpoint_id, process_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE endpoint_tunnels (
	id          TEXT PRIMARY KEY,
	endpoint_id TEXT NOT NULL,
	process_id  TEXT NOT NULL,
	opened_at   INTEGER NOT NULL,
	detail      BLOB NOT NULL
) STRICT;
CREATE INDEX endpoint_tunnels_by_process ON endpoint_tunnels (endpoint_id, process_id);
