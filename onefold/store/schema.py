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
    # 2: the identity graph.
    """
    CREATE TABLE identity_profiles (
        profile_id VARCHAR PRIMARY KEY,
        anchor_namespace VARCHAR NOT NULL,
        anchor_value VARCHAR NOT NULL,
        anchor_seq BIGINT NOT NULL,
        merged_into VARCHAR,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE identifiers (
        namespace VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        profile_id VARCHAR NOT NULL,
        first_seq BIGINT NOT NULL,
        source_id VARCHAR,
        PRIMARY KEY (namespace, value)
    );
    CREATE TABLE identity_merges (
        seq BIGINT,
        message_id VARCHAR,
        surviving_id VARCHAR NOT NULL,
        absorbed_id VARCHAR NOT NULL,
        namespace VARCHAR,
        value VARCHAR,
        method VARCHAR NOT NULL,
        probability DOUBLE,
        reasons JSON,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE identity_refusals (
        seq BIGINT NOT NULL,
        message_id VARCHAR,
        namespace VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        profile_id VARCHAR NOT NULL,
        other_profile_id VARCHAR,
        rule VARCHAR NOT NULL,
        detail VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE event_identity (
        seq BIGINT NOT NULL,
        namespace VARCHAR NOT NULL,
        value VARCHAR NOT NULL
    );
    CREATE TABLE identity_blocked (
        namespace VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        occurrences BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        PRIMARY KEY (namespace, value)
    );
    """,
    # 3: traits: what identify calls and imports said, and each profile's current values.
    """
    CREATE TABLE trait_observations (
        seq BIGINT NOT NULL,
        source_id VARCHAR NOT NULL,
        trait VARCHAR NOT NULL,
        value JSON,
        "timestamp" TIMESTAMP NOT NULL
    );
    CREATE TABLE profile_traits (
        profile_id VARCHAR NOT NULL,
        trait VARCHAR NOT NULL,
        value JSON NOT NULL,
        source_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        "timestamp" TIMESTAMP NOT NULL
    );
    """,
    # 4: computed traits.
    """
    CREATE TABLE computed_traits (
        profile_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        value JSON,
        as_of TIMESTAMP NOT NULL
    );
    """,
    # 5: manual identity overrides and the audit of changes made to the graph by hand.
    """
    CREATE TABLE identity_overrides (
        id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        namespace VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        other_namespace VARCHAR,
        other_value VARCHAR,
        reason VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        removed_at TIMESTAMP
    );
    CREATE TABLE identity_audit (
        created_at TIMESTAMP NOT NULL,
        action VARCHAR NOT NULL,
        override_id VARCHAR,
        reason VARCHAR,
        profiles_before JSON NOT NULL,
        profiles_after JSON NOT NULL,
        events_replayed BIGINT NOT NULL
    );
    """,
    # 6: accounts, from group calls.
    """
    CREATE TABLE account_events (
        seq BIGINT NOT NULL,
        group_id VARCHAR NOT NULL,
        "timestamp" TIMESTAMP NOT NULL
    );
    CREATE TABLE account_observations (
        seq BIGINT NOT NULL,
        group_id VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL,
        trait VARCHAR NOT NULL,
        value JSON,
        "timestamp" TIMESTAMP NOT NULL
    );
    """,
    # 7: ART indexes for reading one profile: its identifiers, traits and computed traits.
    # (DuckDB scans an index for an equality filter on one indexed column; without these a
    # profile view scanned every identifier, trait and computed trait row.)
    """
    CREATE INDEX identifiers_profile ON identifiers (profile_id);
    CREATE INDEX profile_traits_profile ON profile_traits (profile_id);
    CREATE INDEX computed_traits_profile ON computed_traits (profile_id);
    """,
    # 8: the profiles whose views the serving store has yet to be given (see
    # onefold.unify.publish); a database made before it has all of its profiles to publish.
    """
    CREATE TABLE serving_dirty (profile_id VARCHAR NOT NULL);
    INSERT INTO serving_dirty VALUES ('*');
    """,
    # 9: links between identifiers beyond the rules: probabilistic matches (merged, or
    # waiting for review) and manual "always link" overrides. An active link is replayed
    # right after the event at `position`, so a rebuild gives what applying it live gave.
    """
    CREATE TABLE identity_links (
        id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        namespace_a VARCHAR NOT NULL,
        value_a VARCHAR NOT NULL,
        namespace_b VARCHAR NOT NULL,
        value_b VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        position BIGINT,
        probability DOUBLE,
        reasons JSON,
        note VARCHAR,
        created_at TIMESTAMP NOT NULL,
        decided_at TIMESTAMP
    );
    """,
    # 10: the indexes of migration 7 on traits and computed traits go: profile views are
    # now read from the serving store and built for many profiles at once (a join, which
    # does not use them), while every micro-batch paid for keeping them at its commit.
    """
    DROP INDEX profile_traits_profile;
    DROP INDEX computed_traits_profile;
    """,
    # 11: computed traits as one JSON object per profile (the non-null values, by name):
    # a micro-batch replaces a row per touched profile instead of one per trait, and a view
    # is read without gathering them. `computed_traits` stays, as a view, for readers.
    """
    CREATE TABLE profile_computed_traits (
        profile_id VARCHAR NOT NULL,
        traits JSON NOT NULL,
        as_of TIMESTAMP NOT NULL
    );
    INSERT INTO profile_computed_traits
    SELECT profile_id, '{' || string_agg(to_json(name) || ':' || value, ',' ORDER BY name) || '}',
           max(as_of)
    FROM computed_traits GROUP BY profile_id;
    DROP TABLE computed_traits;
    CREATE VIEW computed_traits AS
    SELECT c.profile_id, t.key AS name, t.value, c.as_of
    FROM profile_computed_traits c, json_each(c.traits) t;
    """,
    # 12: each attribution's identifier as a 128-bit hash too (see
    # onefold.unify.membership.IDENTIFIER_HASH): a micro-batch finds its profiles' events by
    # joining on it, one integer column, instead of hashing two strings of every row.
    """
    ALTER TABLE event_identity ADD COLUMN identifier_hash UHUGEINT;
    UPDATE event_identity SET identifier_hash = md5_number(namespace || chr(31) || value);
    """,
    # 13: a mark may say that only a profile's computed traits changed, and carry them
    # (see onefold.unify.publish): most events change nothing else, and the serving store
    # then sets that part of the stored view instead of being given the whole view again.
    # Marks made before it (no computed traits) ask for the whole view, as they did.
    """
    ALTER TABLE serving_dirty ADD COLUMN computed_traits VARCHAR;
    ALTER TABLE serving_dirty ADD COLUMN batch_upto BIGINT;
    """,
    # 14: the per-profile tables that micro-batches replace rows of hold each row's profile
    # as a 128-bit hash too (see onefold.unify.membership.PROFILE_HASH): finding the rows
    # of a few thousand profiles reads that one integer column instead of every row's id.
    """
    ALTER TABLE profile_traits ADD COLUMN profile_hash UHUGEINT;
    UPDATE profile_traits SET profile_hash = md5_number(profile_id);
    ALTER TABLE profile_computed_traits ADD COLUMN profile_hash UHUGEINT;
    UPDATE profile_computed_traits SET profile_hash = md5_number(profile_id);
    """,
    # 15: which profiles were absorbed, and into which live profile, in a table of their
    # own (see onefold.unify.profile_rows): merges change it, and an UPDATE of rows
    # scattered over the table of every profile cost DuckDB more than the whole rest of
    # a merge. `identity_profiles` stays, as a view with the same columns, for readers.
    """
    CREATE TABLE profile_anchors (
        profile_id VARCHAR PRIMARY KEY,
        anchor_namespace VARCHAR NOT NULL,
        anchor_value VARCHAR NOT NULL,
        anchor_seq BIGINT NOT NULL,
        created_at TIMESTAMP NOT NULL
    );
    INSERT INTO profile_anchors
    SELECT profile_id, anchor_namespace, anchor_value, anchor_seq, created_at
    FROM identity_profiles ORDER BY rowid;
    CREATE TABLE absorbed_profiles (
        profile_id VARCHAR NOT NULL,
        merged_into VARCHAR NOT NULL
    );
    INSERT INTO absorbed_profiles
    SELECT profile_id, merged_into FROM identity_profiles
    WHERE merged_into IS NOT NULL ORDER BY rowid;
    DROP TABLE identity_profiles;
    CREATE VIEW identity_profiles AS
    SELECT p.profile_id, p.anchor_namespace, p.anchor_value, p.anchor_seq, a.merged_into,
           p.created_at
    FROM profile_anchors p LEFT JOIN absorbed_profiles a ON a.profile_id = p.profile_id;
    """,
    # 16: a mark says whether it asks for the whole view, so that a micro-batch's marks for
    # whole views can carry the computed traits it gave those profiles as well (see
    # onefold.unify.publish): the publish then need not read them back from the warehouse.
    # Marks made before it ask for the whole view when they carry no computed traits.
    """
    ALTER TABLE serving_dirty ADD COLUMN whole BOOLEAN DEFAULT true;
    UPDATE serving_dirty SET whole = computed_traits IS NULL;
    """,
    # 17: identifiers hold their profile's hash too, as the per-profile tables do (14):
    # a publish finds the identifiers of the profiles it builds views of by that column,
    # instead of reading every identifier's namespace, value and profile id.
    """
    ALTER TABLE identifiers ADD COLUMN profile_hash UHUGEINT;
    UPDATE identifiers SET profile_hash = md5_number(profile_id);
    """,
]
