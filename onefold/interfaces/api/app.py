"""The management API application."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from onefold import __version__
from onefold.collect.events import EventFilter, count_events, list_events
from onefold.collect.messages import MESSAGE_TYPES
from onefold.collect.sources import SOURCE_TYPES, SourceError
from onefold.errors import OnefoldError
from onefold.interfaces.api import errors
from onefold.interfaces.api.errors import APIError
from onefold.runtime import Onefold
from onefold.unify import links, publish
from onefold.unify.accounts import account_view
from onefold.unify.dryrun import dry_run
from onefold.unify.health import health_report
from onefold.unify.links import LinkError
from onefold.unify.profiles import ProfileError, parse_identifier
from onefold.unify.profiles import timeline as profile_timeline
from onefold.unify.rules import IdentityRules
from onefold.unify.search import SearchError, parse_condition, search_profiles

_bearer = HTTPBearer(auto_error=False)


class SourceIn(BaseModel):
    name: str = Field(description="Unique, lower-case name, e.g. 'web-shop'.")
    type: str = Field(default="other", description="One of " + ", ".join(SOURCE_TYPES))


class SourceOut(BaseModel):
    id: str
    name: str
    type: str
    write_key: str
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None = None


class EventOut(BaseModel):
    seq: int
    source_id: str
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    previous_id: str | None
    timestamp: datetime | None
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    request_id: str
    origin: str
    raw: dict = Field(description="The message exactly as the client sent it.")
    batch: dict | None = Field(description="Batch-level context/integrations merged into it.")


class OverrideIn(BaseModel):
    kind: Literal["block", "never_link"] = Field(
        description="block: the identifier never links anything; never_link: the two "
        "identifiers are never in one profile."
    )
    identifier: str = Field(description="namespace:value")
    other: str | None = Field(default=None, description="namespace:value (never_link)")
    reason: str = Field(min_length=1, description="Why, for the audit.")


class LinkIn(BaseModel):
    identifier: str = Field(description="namespace:value")
    other: str = Field(description="namespace:value")
    reason: str = Field(min_length=1, description="Why, for the audit.")


class DecisionIn(BaseModel):
    note: str | None = Field(default=None, description="Why, for the audit.")


class MatchIn(BaseModel):
    auto_merge: float = Field(
        default=0.95, gt=0, le=1, description="Pairs at least this probable are merged."
    )
    review_low: float = Field(
        default=0.5, gt=0, le=1, description="Pairs at least this probable go to review."
    )


class EventPage(BaseModel):
    events: list[EventOut]
    next_before: int | None = Field(description="Pass as `before` to get the next page.")


def create_api(onefold: Onefold) -> FastAPI:
    api = FastAPI(
        title="Onefold management API",
        version=__version__,
        description="Manage sources and inspect what Onefold has collected. Every endpoint "
        "needs the admin token as `Authorization: Bearer <token>`.",
    )
    errors.install(api)

    def admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        token = credentials.credentials if credentials else ""
        if not hmac.compare_digest(token.encode(), onefold.admin_token.encode()):
            raise APIError(401, "unauthorized", "a valid admin token is required")

    auth = [Depends(admin)]

    def source_or_404(name: str):
        try:
            return onefold.sources.get(name)
        except SourceError as error:
            raise APIError(404, error.code, error.message) from error

    @api.get("/v1/sources", dependencies=auth, response_model=list[SourceOut])
    def sources_list() -> list[dict]:
        return [s.to_dict() for s in onefold.sources.list()]

    @api.post("/v1/sources", dependencies=auth, response_model=SourceOut, status_code=201)
    def sources_create(body: SourceIn) -> dict:
        try:
            return onefold.sources.create(body.name, body.type).to_dict()
        except SourceError as error:
            status = 409 if error.code == "source_exists" else 400
            raise APIError(status, error.code, error.message) from error

    @api.get("/v1/sources/{name}", dependencies=auth, response_model=SourceOut)
    def sources_get(name: str) -> dict:
        return source_or_404(name).to_dict()

    @api.post("/v1/sources/{name}/disable", dependencies=auth, response_model=SourceOut)
    def sources_disable(name: str) -> dict:
        source_or_404(name)
        return onefold.sources.set_enabled(name, False).to_dict()

    @api.post("/v1/sources/{name}/enable", dependencies=auth, response_model=SourceOut)
    def sources_enable(name: str) -> dict:
        source_or_404(name)
        return onefold.sources.set_enabled(name, True).to_dict()

    @api.get("/v1/events", dependencies=auth, response_model=EventPage)
    def events_list(
        source: Annotated[str | None, Query(description="Source name")] = None,
        type: Annotated[Literal[tuple(sorted(MESSAGE_TYPES))] | None, Query()] = None,  # type: ignore[valid-type]
        event: str | None = None,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        message_id: str | None = None,
        since: Annotated[datetime | None, Query(description="Event time, inclusive")] = None,
        until: Annotated[datetime | None, Query(description="Event time, exclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        before: Annotated[int | None, Query(description="Cursor from next_before")] = None,
    ) -> dict:
        source_id = source_or_404(source).id if source else None
        where = EventFilter(
            source_id, type, event, user_id, anonymous_id, message_id,
            _utc(since), _utc(until),
        )  # fmt: skip
        events, next_before = list_events(onefold.warehouse, where, limit, before)
        return {"events": events, "next_before": next_before}

    def profile_or_404(identifier: str) -> str:
        try:
            lookup = parse_identifier(identifier, onefold.settings.identity)
        except ProfileError as error:
            raise APIError(400, error.code, error.message) from error
        profile_id = onefold.profiles.find(lookup)
        if profile_id is None:
            raise APIError(
                404, "profile_not_found", f"no profile has {lookup.namespace}:{lookup.value}"
            )
        return profile_id

    @api.get("/v1/profiles", dependencies=auth)
    def profiles_search(
        where: Annotated[
            list[str],
            Query(
                description="trait, operator, value: `country=ES`, `orders>=2`, "
                "`email~@example.com` (contains), `phone?` (has it); all must hold"
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        after: Annotated[str | None, Query(description="Cursor from next_after")] = None,
    ) -> dict:
        """Profiles whose current traits or computed traits meet every condition, by
        profile id, with their traits; `total` counts them all."""
        try:
            conditions = [parse_condition(text) for text in where]
            return search_profiles(onefold.warehouse.cursor(), conditions, limit=limit, after=after)
        except SearchError as error:
            raise APIError(400, error.code, error.message) from error

    @api.get(
        "/v1/profiles/{identifier:path}",
        dependencies=auth,
        response_class=Response,
        responses={200: {"content": {"application/json": {}}}},
    )
    def profiles_get(identifier: str) -> Response:
        """A profile by any identifier, as `namespace:value` (e.g. `email:jane@example.com`,
        `user_id:42`, `profile:pr_…`): its identities with where and when each was first
        seen, traits with provenance, computed traits, accounts, the merges that formed it
        and the links its rules refused. Answered from the serving store, which follows
        the identity graph within a micro-batch."""
        view = onefold.profiles.view_json(profile_or_404(identifier))
        return Response(view, media_type="application/json")

    @api.get("/v1/timeline/{identifier:path}", dependencies=auth)
    def profiles_timeline(
        identifier: str,
        type: Annotated[Literal[tuple(sorted(MESSAGE_TYPES))] | None, Query()] = None,  # type: ignore[valid-type]
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        before: Annotated[str | None, Query(description="Cursor from next_before")] = None,
    ) -> dict:
        """Every event of all the profile's identities, across sources, newest first."""
        profile_id = profile_or_404(identifier)
        try:
            events, cursor = profile_timeline(
                onefold.warehouse.cursor(), profile_id, type=type, limit=limit, before=before
            )
        except ProfileError as error:
            raise APIError(400, error.code, error.message) from error
        return {"profile_id": profile_id, "events": events, "next_before": cursor}

    @api.get("/v1/accounts/{group_id:path}", dependencies=auth)
    def accounts_get(group_id: str) -> dict:
        """An account named by `group` calls: its traits and member profiles."""
        view = account_view(onefold.warehouse.cursor(), group_id)
        if view is None:
            raise APIError(404, "account_not_found", f"no group call named {group_id!r}")
        return view

    @api.get("/v1/identity/health", dependencies=auth)
    def identity_health(
        over: Annotated[int, Query(ge=1, description="Count profiles above this size")] = 20,
    ) -> dict:
        """Largest profiles, profiles over `over` identifiers, refused links per rule."""
        return health_report(onefold.warehouse.cursor(), over, rules=onefold.settings.identity)

    @api.post("/v1/identity/dry-run", dependencies=auth)
    def identity_dry_run(proposed: IdentityRules) -> dict:
        """What the proposed identity rules would do to today's profiles: merges, splits
        and counts. Nothing is changed; apply rules in the settings, then rebuild."""
        onefold.flush()
        return dry_run(onefold.warehouse.cursor(), proposed)

    @api.post("/v1/identity/overrides", dependencies=auth, status_code=201)
    def identity_override(body: OverrideIn) -> dict:
        """Record an override; the affected profiles are re-derived before this answers."""
        rules = onefold.settings.identity
        try:
            key = parse_identifier(body.identifier, rules)
            other = parse_identifier(body.other, rules) if body.other else None
            return onefold.identity.add_override(
                body.kind, (key.namespace, key.value),
                (other.namespace, other.value) if other else None, body.reason,
            )  # fmt: skip
        except OnefoldError as error:
            raise APIError(400, error.code, error.message) from error

    @api.post("/v1/identity/links", dependencies=auth, status_code=201)
    def identity_link(body: LinkIn) -> dict:
        """Always link two identifiers: their profiles are merged (the rules still apply;
        a refused link is recorded). Undo it with `POST /v1/identity/links/{id}/undo`."""
        rules = onefold.settings.identity
        onefold.flush()
        try:
            a = parse_identifier(body.identifier, rules)
            b = parse_identifier(body.other, rules)
            return onefold.identity.always_link(
                (a.namespace, a.value), (b.namespace, b.value), body.reason
            )
        except OnefoldError as error:
            raise APIError(400, error.code, error.message) from error

    @api.get("/v1/identity/links", dependencies=auth)
    def identity_links(
        status: Annotated[
            Literal[links.STATUSES] | None,
            Query(  # type: ignore[valid-type]
                description="review: the queue waiting for a decision"
            ),
        ] = None,
        kind: Annotated[Literal[links.KINDS] | None, Query()] = None,  # type: ignore[valid-type]
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict:
        """Probabilistic and manual links, the most probable first, with the reasons (per
        field, the agreement level and its match weight) and each side's profile."""
        return {"links": links.list_links(
            onefold.warehouse.cursor(), status=status, kind=kind, limit=limit
        )}  # fmt: skip

    @api.post("/v1/identity/links/{link_id}/{action}", dependencies=auth)
    def identity_link_decision(
        link_id: str, action: Literal["accept", "reject", "undo"], body: DecisionIn | None = None
    ) -> dict:
        """accept a link waiting for review (its profiles are merged), reject it, or undo
        an active link (its profiles are split again, and the matcher will not propose the
        pair again)."""
        try:
            return onefold.identity.decide_link(link_id, action, body.note if body else None)
        except LinkError as error:
            status = 404 if error.code == "link_not_found" else 409
            if error.code == "invalid_action":
                status = 400
            raise APIError(status, error.code, error.message) from error

    @api.post("/v1/identity/match", dependencies=auth)
    def identity_match(body: MatchIn | None = None) -> dict:
        """Run probabilistic matching over the profiles' traits (names, e-mail, phone,
        address, birthday): pairs over `auto_merge` are merged at once, recorded as
        probabilistic with their probability and reasons, and can be undone; pairs between
        `review_low` and `auto_merge` wait in the review queue."""
        body = body or MatchIn()
        if body.review_low > body.auto_merge:
            raise APIError(400, "invalid_thresholds", "review_low must not exceed auto_merge")
        onefold.flush()
        from onefold.unify.matching import MatchConfig

        return onefold.identity.match(
            MatchConfig(auto_merge=body.auto_merge, review_low=body.review_low)
        )

    @api.post("/v1/identity/rebuild", dependencies=auth)
    def identity_rebuild() -> dict:
        """Forget the derived graph and resolve every stored event again."""
        onefold.flush()
        return {"events": onefold.identity.rebuild()}

    @api.post("/v1/traits/recompute", dependencies=auth)
    def traits_recompute() -> dict:
        """Recompute every profile's traits and computed traits, moving time windows."""
        onefold.flush()
        onefold.identity.recompute_traits()
        return {"recomputed": True}

    @api.post("/v1/flush", dependencies=auth)
    def flush() -> dict:
        """Load everything acknowledged so far into the warehouse before answering."""
        onefold.flush()
        return {"events": count_events(onefold.warehouse)}

    @api.get("/v1/status", dependencies=auth)
    def status(request: Request) -> dict:
        loader = onefold.loader
        return {
            "version": __version__,
            "events": count_events(onefold.warehouse),
            "backlog_bytes": onefold.log.backlog_bytes,
            "loader_error": loader.last_error,
            "unify_error": onefold.unify.last_error,
            "unify_lag": onefold.identity.lag.summary(),
            "unify_pending_events": onefold.identity.cursor.pending(),
            "unify_pending_profiles": publish.pending(onefold.warehouse.cursor()),
            "unify_batches": onefold.identity.batches.last(),
            "unify_publishes": onefold.identity.publishes.last(),
            "unify_compactions": onefold.identity.compactions.last(),
            "sources": len(onefold.sources.list()),
        }

    return api


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
