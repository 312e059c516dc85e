"""The warehouse schema, as an ordered list of migrations.

A migration is never edited once released; a change is a new entry at the end.
"""

MIGRATIONS: list[str] = [
    # 1: sources, landed messages, deduplication keys and consumer cursors.
    """
    CREATE TABLE sources (
        id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        type VARCHAR NOT NULL,
        write_key VARCHAR NOT NULL UNIQUE,
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        created_at TIMESTAMP NOT NULL,
        disabled_at TIMESTAMP
    );
    CREATE TABLE events (
        seq BIGINT NOT NULL,
        source_id VARCHAR NOT NULL,
        message_id VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        event VARCHAR,
        user_id VARCHAR,
        anonymous_id VARCHAR,
        group_id VARCHAR,
        previous_id VARCHAR,
        "timestamp" TIMESTAMP,
        original_timestamp TIMESTAMP,
        sent_at TIMESTAMP,
        received_at TIMESTAMP NOT NULL,
        request_id VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,
        raw JSON NOT NULL,
        batch JSON
    );
    CREATE TABLE message_keys (
        key UHUGEINT PRIMARY KEY
    );
    CREATE TABLE landed_segments (
        segment BIGINT PRIMARY KEY,
        messages BIGINT NOT NULL,
        stored BIGINT NOT NULL,
        loaded_at TIMESTAMP NOT NULL
    );
    CREATE TABLE consumer_cursors (
        consumer VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL,
        updated_at TIMESTAMP NOT NULL
    );
    """,
]
