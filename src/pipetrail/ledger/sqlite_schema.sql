-- The schema of a new SQLite ledger at revision 0010: what the migrations make,
-- statement for statement. Written by scripts/write_sqlite_schema.py; do not edit.
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE ledger_head (
	id INTEGER NOT NULL, 
	seq BIGINT NOT NULL, 
	hash VARCHAR(71) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE runs (
	run_id VARCHAR(40) NOT NULL, 
	pipeline VARCHAR(200) NOT NULL, 
	pipeline_fingerprint VARCHAR(71) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	owner VARCHAR(200) NOT NULL, 
	host VARCHAR(200) NOT NULL, 
	process VARCHAR(64) NOT NULL, 
	params TEXT NOT NULL, 
	seed BIGINT NOT NULL, 
	git TEXT, 
	environment VARCHAR(71), 
	record TEXT NOT NULL, 
	started_at VARCHAR(32) NOT NULL, 
	ended_at VARCHAR(32), 
	error TEXT, 
	steps_total INTEGER NOT NULL, 
	first_seq BIGINT NOT NULL, 
	last_seq BIGINT NOT NULL, name VARCHAR(200), purpose VARCHAR(16) DEFAULT 'run' NOT NULL, 
	PRIMARY KEY (run_id)
);

CREATE TABLE step_runs (
	step_run_id VARCHAR(40) NOT NULL, 
	run_id VARCHAR(40) NOT NULL, 
	node_id VARCHAR(300) NOT NULL, 
	step VARCHAR(200) NOT NULL, 
	pipeline VARCHAR(200) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	cache_key VARCHAR(71), 
	cache_decision VARCHAR(16), 
	cache_reason TEXT, 
	reused_step_run_id VARCHAR(40), 
	code_digest VARCHAR(71), 
	components TEXT, 
	inputs TEXT, 
	outputs TEXT, 
	resources TEXT, 
	logs VARCHAR(71), 
	seed BIGINT, 
	started_at VARCHAR(32) NOT NULL, 
	ended_at VARCHAR(32), 
	error TEXT, 
	traceback TEXT, 
	first_seq BIGINT NOT NULL, 
	last_seq BIGINT NOT NULL, resource_requests TEXT, 
	PRIMARY KEY (step_run_id)
);

CREATE TABLE artifacts (
	digest VARCHAR(71) NOT NULL, 
	blob VARCHAR(71) NOT NULL, 
	serializer VARCHAR(32) NOT NULL, 
	type_name VARCHAR(200) NOT NULL, 
	size BIGINT NOT NULL, 
	meta TEXT NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	first_run_id VARCHAR(40), 
	first_step_run_id VARCHAR(40), 
	created_at VARCHAR(32) NOT NULL, 
	first_seq BIGINT NOT NULL, 
	PRIMARY KEY (digest)
);

CREATE TABLE step_run_io (
	step_run_id VARCHAR(40) NOT NULL, 
	direction VARCHAR(3) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	digest VARCHAR(71) NOT NULL, 
	run_id VARCHAR(40) NOT NULL, 
	PRIMARY KEY (step_run_id, direction, name)
);

CREATE TABLE sources (
	run_id VARCHAR(40) NOT NULL, 
	path VARCHAR(1000) NOT NULL, 
	digest VARCHAR(71) NOT NULL, 
	size BIGINT NOT NULL, 
	mtime_ns BIGINT NOT NULL, 
	observed_at VARCHAR(32) NOT NULL, 
	by_reference INTEGER NOT NULL, 
	seq BIGINT NOT NULL, 
	PRIMARY KEY (run_id, path)
);

CREATE TABLE run_params (
	run_id VARCHAR(40) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	value TEXT NOT NULL, num FLOAT, 
	PRIMARY KEY (run_id, name)
);

CREATE TABLE run_tags (
	run_id VARCHAR(40) NOT NULL, 
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	seq BIGINT NOT NULL, 
	PRIMARY KEY (run_id, "key")
);

CREATE TABLE run_notes (
	seq BIGINT NOT NULL, 
	run_id VARCHAR(40) NOT NULL, 
	text TEXT NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	noted_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (seq)
);

CREATE TABLE run_deletions (
	run_id VARCHAR(40) NOT NULL, 
	reason TEXT NOT NULL, 
	deleted_by VARCHAR(200) NOT NULL, 
	deleted_at VARCHAR(32) NOT NULL, 
	seq BIGINT NOT NULL, 
	PRIMARY KEY (run_id)
);

CREATE TABLE run_metrics (
	step_run_id VARCHAR(40) NOT NULL, 
	"key" VARCHAR(400) NOT NULL, 
	run_id VARCHAR(40) NOT NULL, 
	node_id VARCHAR(400) NOT NULL, 
	name VARCHAR(800) NOT NULL, 
	value FLOAT NOT NULL, 
	origin VARCHAR(8) NOT NULL, 
	PRIMARY KEY (step_run_id, "key")
);

CREATE TABLE merkle_nodes (
	level INTEGER NOT NULL, 
	idx BIGINT NOT NULL, 
	hash BLOB NOT NULL, 
	PRIMARY KEY (level, idx)
)
 WITHOUT ROWID

;

CREATE TABLE api_tokens (
	token_id VARCHAR(32) NOT NULL, 
	digest VARCHAR(71) NOT NULL, 
	user_name VARCHAR(64) NOT NULL, 
	label VARCHAR(200) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	created_by VARCHAR(64) NOT NULL, 
	expires_at VARCHAR(32), 
	revoked_at VARCHAR(32), 
	revoked_by VARCHAR(64), 
	PRIMARY KEY (token_id), 
	UNIQUE (digest)
);

CREATE TABLE "events" (
	seq INTEGER NOT NULL, 
	ts VARCHAR(32) NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	kind VARCHAR(64) NOT NULL, 
	run_id VARCHAR(40), 
	payload TEXT NOT NULL, 
	prev_hash VARCHAR(71) NOT NULL, 
	hash VARCHAR(71) NOT NULL, 
	PRIMARY KEY (seq)
);

CREATE INDEX ix_step_runs_run_id ON step_runs (run_id);

CREATE INDEX ix_step_run_io_digest ON step_run_io (digest, direction);

CREATE INDEX ix_sources_digest ON sources (digest);

CREATE INDEX ix_step_runs_cache_key_seq ON step_runs (cache_key, last_seq);

CREATE INDEX ix_runs_purpose_run_id ON runs (purpose, run_id);

CREATE INDEX ix_runs_pipeline_run_id ON runs (pipeline, run_id);

CREATE INDEX ix_runs_status_run_id ON runs (status, run_id);

CREATE INDEX ix_runs_started_at ON runs (started_at);

CREATE INDEX ix_run_tags_key_value ON run_tags ("key", value, run_id);

CREATE INDEX ix_run_notes_run_id ON run_notes (run_id);

CREATE INDEX ix_run_metrics_run_id ON run_metrics (run_id);

CREATE INDEX ix_api_tokens_user ON api_tokens (user_name);

CREATE INDEX ix_events_run_id ON events (run_id);

CREATE INDEX ix_events_kind ON events (kind);

CREATE INDEX ix_step_runs_pipeline_step ON step_runs (pipeline, step, first_seq);

CREATE INDEX ix_run_params_name_num_value ON run_params (name, num, value, run_id);

CREATE INDEX ix_run_metrics_key_value_name ON run_metrics ("key", value, run_id, name);

INSERT INTO alembic_version (version_num) VALUES ('0010');

