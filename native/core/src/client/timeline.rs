//! Complete timelines: gaps filled by back-pagination, older history on demand, and a room
//! known locally as soon as we join or create it.
//!
//! A gap is opened by the sync that reveals it (`store::timeline`); [`Client::fill_gaps`]
//! then fetches `/messages?dir=b` pages for several rooms at once (at most
//! [`CONCURRENT_GAPS`] requests in flight) and applies each page in its own transaction with
//! the gap's progress, through the same checks as the sync (`sync::apply_back_page`). A
//! network failure leaves the gap where it is: the next sync (or the next start, after a
//! kill) resumes it from its last committed page.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::Client;
use super::sync::{self, BackStop, SyncSummary};
use crate::api::types::MessagesResponse;
use crate::api::{ApiError, call};
use crate::crypto::CryptoError;
use crate::error::Error;
use crate::net::{Request, Transport};
use crate::secret::AccessToken;
use crate::store::timeline::{self as tl, Gap, TimelineEvent};

/// Gap pages fetched at once (one per room).
pub(crate) const CONCURRENT_GAPS: usize = 4;
/// Events asked for per page.
const PAGE_LIMIT: u32 = 100;
/// Cap on a `/messages` body (100 events of at most 64 KiB each would be more; Synapse's
/// pages of encrypted messages are a few hundred KiB).
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// Cap on a `/state` body.
const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

/// What [`Client::paginate_back`] loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    /// The events newly stored (decrypted, waiting for a key, or refused), oldest first.
    pub events: Vec<TimelineEvent>,
    /// The start of the room was reached: there is nothing older.
    pub reached_start: bool,
}

/// Inside a transaction: one page of `gap` stored through the sync's checks, and the gap
/// advanced to the page's `end` (or closed, if the page reached the gap's end).
pub(crate) fn apply_gap_page(
    tx: &rusqlite::Connection,
    engine: &mut crate::crypto::engine::Engine,
    gap: &Gap,
    page: &MessagesResponse,
    own_user: &str,
    summary: &mut SyncSummary,
) -> Result<(), crate::store::StoreError> {
    let mut next_ord = gap.next_ord;
    let stop = BackStop {
        until_event: gap.until_event.as_deref(),
        join_of: gap.until_event.is_none().then_some(own_user),
        at_stored: true,
    };
    let reached = sync::apply_back_page(
        tx,
        engine,
        &gap.room_id,
        &page.chunk,
        stop,
        &mut next_ord,
        gap.floor_ord,
        summary,
    )?;
    match page.end.as_deref().filter(|t| sync::valid_token(t)) {
        Some(end) if !reached && !page.chunk.is_empty() => {
            tl::advance_gap(tx, gap.id, end, next_ord)
        }
        _ => tl::close_gap(tx, gap.id),
    }
}

/// Inside a transaction: one page of older history stored below everything in the room, and
/// the room's history cursor moved. Returns the page's events as stored (oldest first) and
/// whether the room's start was reached.
pub(crate) fn apply_history_page(
    tx: &rusqlite::Connection,
    engine: &mut crate::crypto::engine::Engine,
    room_id: &str,
    from: Option<&str>,
    page: &MessagesResponse,
    summary: &mut SyncSummary,
) -> Result<(Vec<TimelineEvent>, bool), crate::store::StoreError> {
    let Some(mut cursor) = tl::room_cursor(tx, room_id)? else {
        return Ok((Vec::new(), false));
    };
    if cursor.back_token.as_deref() != from || cursor.history_complete {
        // Loaded by someone else meanwhile: this page is not the next one any more.
        return Ok((Vec::new(), cursor.history_complete));
    }
    let mut known = std::collections::BTreeSet::new();
    for id in page
        .chunk
        .iter()
        .filter_map(|raw| raw.get("event_id").and_then(Value::as_str))
    {
        if tl::timeline_state(tx, id)?.is_some() {
            known.insert(id);
        }
    }
    let stop = BackStop {
        until_event: None,
        join_of: None,
        at_stored: false,
    };
    let reached = sync::apply_back_page(
        tx,
        engine,
        room_id,
        &page.chunk,
        stop,
        &mut cursor.low_ord,
        i64::MIN,
        summary,
    )?;
    match page.end.as_deref().filter(|t| sync::valid_token(t)) {
        Some(end) if !reached && !page.chunk.is_empty() => {
            cursor.back_token = Some(end.to_owned());
        }
        _ => cursor.history_complete = true,
    }
    tl::save_room_cursor(tx, room_id, &cursor)?;
    // What the page stored (decrypted, waiting for a key, or refused), oldest first; events
    // stored before this page are not repeated.
    let mut events = Vec::new();
    for raw in page.chunk.iter().rev() {
        if let Some(id) = raw.get("event_id").and_then(Value::as_str)
            && !known.contains(id)
            && let Some(e) = tl::timeline_event(tx, id)?
            && e.room_id == room_id
            && !events
                .iter()
                .any(|h: &TimelineEvent| h.event_id == e.event_id)
        {
            events.push(e);
        }
    }
    Ok((events, cursor.history_complete))
}

/// One round of gap pages, ready to fetch without the client.
#[derive(Debug)]
pub struct PendingGapPages {
    transport: Transport,
    token: AccessToken,
    gaps: Vec<Gap>,
}

/// The pages of one round, fetched (each page, or its failure).
#[derive(Debug)]
pub struct FetchedGapPages {
    pages: Vec<(Gap, Result<MessagesResponse, Error>)>,
}

impl PendingGapPages {
    /// Fetches the next page of every gap of the round at once.
    pub async fn fetch(self) -> FetchedGapPages {
        let Self {
            transport,
            token,
            gaps,
        } = self;
        let mut fetches = tokio::task::JoinSet::new();
        for (index, gap) in gaps.iter().enumerate() {
            let (transport, token) = (transport.clone(), token.clone());
            let (room_id, from) = (gap.room_id.clone(), gap.from_token.clone());
            fetches.spawn(async move {
                let page = fetch_page(&transport, &token, &room_id, Some(&from), PAGE_LIMIT);
                (index, page.await)
            });
        }
        let mut pages: Vec<Option<Result<MessagesResponse, Error>>> =
            gaps.iter().map(|_| None).collect();
        while let Some(joined) = fetches.join_next().await {
            match joined {
                Ok((index, page)) => {
                    if let Some(slot) = pages.get_mut(index) {
                        *slot = Some(page);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a gap page fetch task failed"),
            }
        }
        let pages = gaps
            .into_iter()
            .zip(pages)
            .map(|(gap, page)| {
                let page = page.unwrap_or_else(|| {
                    Err(Error::Api(ApiError::Transport(
                        crate::net::TransportError::Network {
                            detail: "the fetch task did not finish".into(),
                        },
                    )))
                });
                (gap, page)
            })
            .collect();
        FetchedGapPages { pages }
    }
}

/// One backwards page of a room's timeline.
async fn fetch_page(
    transport: &Transport,
    token: &AccessToken,
    room_id: &str,
    from: Option<&str>,
    limit: u32,
) -> Result<MessagesResponse, Error> {
    let limit = limit.to_string();
    Ok(call(transport, "/rooms/messages", || {
        let mut r = Request::new(
            Method::GET,
            vec!["_matrix", "client", "v3", "rooms", room_id, "messages"],
        );
        r.access_token = Some(token);
        r.query.push(("dir", "b".to_owned()));
        r.query.push(("limit", limit.clone()));
        if let Some(from) = from {
            r.query.push(("from", from.to_owned()));
        }
        r.max_body_bytes = Some(MAX_PAGE_BYTES);
        r
    })
    .await?)
}

impl Client {
    /// Fills every open gap (see the module documentation). Messages the back-fill decrypted
    /// are added to `summary.messages` (before the sync's own, oldest first per room); a
    /// network failure stops the fill for now without an error (`summary.gaps_open` says what
    /// is left). A gap the server refuses to page (e.g. a room we may no longer read) is closed
    /// and journaled.
    pub async fn fill_gaps(&mut self, summary: &mut SyncSummary) -> Result<(), Error> {
        while let Some(pending) = self.prepare_gap_pages()? {
            let fetched = pending.fetch().await;
            if !self.apply_gap_pages(fetched, summary)? {
                break;
            }
        }
        Ok(())
    }

    /// The first step of one round of [`Client::fill_gaps`]: the next page of up to
    /// [`CONCURRENT_GAPS`] open gaps (one per room), to fetch without the client (the JNI
    /// bridge releases its lock meanwhile, so sends are not held up by a long catch-up).
    /// `None` when no gap is open.
    pub fn prepare_gap_pages(&self) -> Result<Option<PendingGapPages>, Error> {
        let gaps = tl::open_gaps(self.store.conn(), CONCURRENT_GAPS)?;
        if gaps.is_empty() {
            return Ok(None);
        }
        Ok(Some(PendingGapPages {
            transport: self.transport.clone(),
            token: self.token()?.clone(),
            gaps,
        }))
    }

    /// The last step of one round: each fetched page applied in its own transaction with its
    /// gap's progress (a page whose gap moved meanwhile is dropped: it is fetched again from
    /// the gap's new position). Returns whether another round can make progress (false after
    /// a network failure that left every gap where it was).
    pub fn apply_gap_pages(
        &mut self,
        fetched: FetchedGapPages,
        summary: &mut SyncSummary,
    ) -> Result<bool, Error> {
        let (own_user, _) = self.own_ids()?;
        let mut progressed = false;
        let mut network_down = None;
        for (gap, page) in fetched.pages {
            match page {
                Ok(page) => {
                    self.apply_gap_page(&gap, &page, &own_user, summary)?;
                    progressed = true;
                }
                Err(e) if e.tls_rejection().is_some() => return Err(e),
                Err(e) if e.is_network() => network_down = Some(e),
                Err(e @ Error::Api(ApiError::UnknownToken { .. } | ApiError::ExpiredAccount)) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), "a gap cannot be filled; closed");
                    let detail = format!("gap back-fill refused by the homeserver: {e}");
                    self.store.transaction(|tx| {
                        tl::close_gap(tx, gap.id)?;
                        crate::store::rooms::record_security_event(
                            tx,
                            "gap_unfillable",
                            Some(&gap.room_id),
                            None,
                            &detail,
                        )
                    })?;
                    summary.security_events += 1;
                    progressed = true;
                }
            }
        }
        summary.gaps_open = usize::try_from(tl::gap_count(self.store.conn())?).unwrap_or(0);
        if let Some(e) = network_down
            && !progressed
        {
            tracing::warn!(
                code = e.code(),
                "gap back-fill interrupted; resumes at the next sync"
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// One page of a gap, in one transaction with the gap's progress.
    fn apply_gap_page(
        &mut self,
        gap: &Gap,
        page: &MessagesResponse,
        own_user: &str,
        summary: &mut SyncSummary,
    ) -> Result<(), Error> {
        let mut page_summary = SyncSummary::default();
        let result = {
            let Self { store, engine, .. } = self;
            let engine = engine.as_mut().ok_or(Error::NotLoggedIn)?;
            store.transaction_seeing(|tx, changed| {
                engine
                    .refresh(tx, changed)
                    .map_err(CryptoError::into_store_error)?;
                if tl::gap(tx, gap.id)?.as_ref() != Some(gap) {
                    return Ok(()); // filled or moved meanwhile: the page is stale
                }
                apply_gap_page(tx, engine, gap, page, own_user, &mut page_summary)?;
                crate::fault::point("before-gap-page-commit");
                Ok(())
            })
        };
        if let Err(e) = result {
            self.reload_engine()?;
            return Err(e.into());
        }
        crate::fault::point("after-gap-page-commit");
        tracing::debug!(stored = page_summary.backfilled, "gap page stored");
        summary.backfilled += page_summary.backfilled;
        summary.malformed_events += page_summary.malformed_events;
        summary.security_events += page_summary.security_events;
        // This page is older than what the summary holds for the room: put it first.
        let mut messages = page_summary.messages;
        messages.append(&mut summary.messages);
        summary.messages = messages;
        Ok(())
    }

    /// Loads up to `limit` messages older than the oldest stored in `room_id` (a newly joined
    /// room's first screen, scroll-back), with the same decryption and checks as the sync;
    /// returns them oldest first. Events whose key has not arrived are stored as waiting for
    /// it and decrypted when it comes.
    pub async fn paginate_back(&mut self, room_id: &str, limit: u32) -> Result<History, Error> {
        super::rooms::check_room_id(room_id)?;
        let token = self.token()?.clone();
        let mut history = History::default();
        let mut stored = 0usize;
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        while stored < wanted {
            let cursor = tl::room_cursor(self.store.conn(), room_id)?.ok_or_else(|| {
                Error::InvalidArgument {
                    what: format!("unknown room {room_id}"),
                }
            })?;
            if cursor.history_complete {
                history.reached_start = true;
                break;
            }
            let page_limit = u32::try_from(wanted - stored)
                .unwrap_or(PAGE_LIMIT)
                .clamp(10, PAGE_LIMIT);
            let page = fetch_page(
                &self.transport,
                &token,
                room_id,
                cursor.back_token.as_deref(),
                page_limit,
            )
            .await?;
            let mut page_summary = SyncSummary::default();
            let result = {
                let Self { store, engine, .. } = self;
                let engine = engine.as_mut().ok_or(Error::NotLoggedIn)?;
                store.transaction_seeing(|tx, changed| {
                    engine
                        .refresh(tx, changed)
                        .map_err(CryptoError::into_store_error)?;
                    let from = cursor.back_token.as_deref();
                    apply_history_page(tx, engine, room_id, from, &page, &mut page_summary)
                })
            };
            let (events, complete) = match result {
                Ok(v) => v,
                Err(e) => {
                    self.reload_engine()?;
                    return Err(e.into());
                }
            };
            stored += page_summary.backfilled;
            let mut older = events;
            older.append(&mut history.events);
            history.events = older;
            if complete {
                history.reached_start = true;
                break;
            }
        }
        Ok(history)
    }

    /// After a join or a room creation: the room's current state fetched and applied, so the
    /// room is known (members, encryption) before any sync, and a message can be sent at once.
    /// Our own join event becomes the point a later gap must reach.
    pub(crate) async fn learn_joined_room(&mut self, room_id: &str) -> Result<(), Error> {
        let (own_user, _) = self.own_ids()?;
        let token = self.token()?.clone();
        let state: Vec<Value> = call(&self.transport, "/rooms/state", || {
            let mut r = Request::new(
                Method::GET,
                vec!["_matrix", "client", "v3", "rooms", room_id, "state"],
            );
            r.access_token = Some(&token);
            r.max_body_bytes = Some(MAX_STATE_BYTES);
            r.timeout = Some(Duration::from_secs(60));
            r
        })
        .await?;
        let Self { store, .. } = self;
        store.transaction(|tx| sync::apply_joined_state(tx, room_id, &state, &own_user))?;
        tracing::info!(room_id, "room state loaded");
        Ok(())
    }
}
