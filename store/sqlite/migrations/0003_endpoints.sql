-- Instance Connect Endpoints. A row outlives its subnet once the endpoint
-- is deleted (describe keeps showing delete-complete), so subnet_id has no
-- foreign key; the store checks the subnet exists on create. Tags live in
-- the tags table under the eice- id.
CREATE TABLE endpoints (
	id                  TEXT PRIMARY KEY,
	subnet_id           TEXT NOT NULL,
	vpc_id              TEXT NOT NULL,
	availability_zone   TEXT NOT NULL,
	state               TEXT NOT NULL,
	state_message       TEXT NOT NULL,
	dns_name            TEXT NOT NULL,
	fips_dns_name       TEXT NOT NULL,
	preserve_client_ip  INTEGER NOT NULL,
	security_group_ids  TEXT NOT NULL, -- JSON array
	allowed_ports       TEXT NOT NULL, -- JSON array of integers
	max_connections     INTEGER NOT NULL,
	max_tunnel_seconds  INTEGER NOT NULL,
	client_token        TEXT NOT NULL,
	request_digest      BLOB NOT NULL,
	credential_hash     BLOB NOT NULL,
	created_at          INTEGER,
	joined_at           INTEGER,
	created_by          TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX endpoints_by_client_token ON endpoints (client_token) WHERE client_token <> '';
-- At most one live endpoint per subnet.
CREATE UNIQUE INDEX endpoints_live_in_subnet ON endpoints (subnet_id)
	WHERE state NOT IN ('delete-in-progress', 'delete-complete');
