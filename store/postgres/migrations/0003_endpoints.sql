-- Instance Connect Endpoints. A row outlives its subnet once the endpoint
-- is deleted (describe keeps showing delete-complete), so subnet_id has no
-- foreign key; the store checks the subnet exists on create. Tags live in
-- the tags table under the eice- id.
CREATE TABLE endpoints (
	id                  TEXT COLLATE "C" PRIMARY KEY,
	subnet_id           TEXT COLLATE "C" NOT NULL,
	vpc_id              TEXT COLLATE "C" NOT NULL,
	availability_zone   TEXT COLLATE "C" NOT NULL,
	state               TEXT COLLATE "C" NOT NULL,
	state_message       TEXT COLLATE "C" NOT NULL,
	dns_name            TEXT COLLATE "C" NOT NULL,
	fips_dns_name       TEXT COLLATE "C" NOT NULL,
	preserve_client_ip  BOOLEAN NOT NULL,
	security_group_ids  TEXT COLLATE "C" NOT NULL, -- JSON array
	allowed_ports       TEXT COLLATE "C" NOT NULL, -- JSON array of integers
	max_connections     BIGINT NOT NULL,
	max_tunnel_seconds  BIGINT NOT NULL,
	client_token        TEXT COLLATE "C" NOT NULL,
	request_digest      BYTEA NOT NULL,
	credential_hash     BYTEA NOT NULL,
	created_at          BIGINT,
	joined_at           BIGINT,
	created_by          TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX endpoints_by_client_token ON endpoints (client_token) WHERE client_token <> '';
-- At most one live endpoint per subnet.
CREATE UNIQUE INDEX endpoints_live_in_subnet ON endpoints (subnet_id)
	WHERE state NOT IN ('delete-in-progress', 'delete-complete');
