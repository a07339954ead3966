//! Wiring the cluster into the actor hosts: which actors a scope has, the
//! gates that start them only on the lease holder, the store's write
//! guard, room commands handed to the owner, and the scope of a timer.

use std::sync::Arc;

use eventuall_domain::room::RoomCommand;

use super::route::FORWARDED_BY;
use super::{Cluster, Owner, Scope, ScopeHosts};
use crate::auth::{Claims, Role};
use crate::host::Failure;
use crate::http::AppState;
use crate::rooms::RoomFailure;
use crate::store::{EventStore, Metadata};
use crate::timers::Timer;

/// The registries whose actors belong to scopes.
struct Hosts {
    state: AppState,
}

impl ScopeHosts for Hosts {
    fn is_live(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Event(id) => self.state.rooms.is_live(id) || self.state.queues.registry().is_live(id),
            Scope::User(id) => self.state.interviews.directories().is_live(id),
        }
    }

    fn evict(&self, scope: &Scope) {
        match scope {
            Scope::Event(id) => {
                self.state.rooms.registry().evict(id);
                self.state.queues.registry().evict(id);
            }
            Scope::User(id) => {
                self.state.interviews.directories().evict(id);
                // The user's interview actors are keyed by interview: find
                // them in the interview list.
                let state = self.state.clone();
                let user = id.clone();
                tokio::spawn(async move {
                    let sql = "select interview_id from interviews where user_id = $1";
                    match state.store.query_as::<(String,)>(sql, &[user.as_str().into()]).await {
                        Ok(rows) => rows.iter().for_each(|(id,)| state.interviews.conversations().evict(id)),
                        Err(error) => tracing::warn!(%user, %error, "could not list the interviews to stop"),
                    }
                });
            }
        }
    }
}

/// Connects `cluster` to the service: gates, write guard, room forwarding.
pub fn install(cluster: &Cluster, state: &AppState) {
    cluster.set_hosts(Arc::new(Hosts { state: state.clone() }));
    let guard = cluster.clone();
    state.store.set_write_guard(Arc::new(move |stream| guard.may_write(stream)));
    state.rooms.registry().set_gate(gate(cluster, Scope::Event));
    state.queues.registry().set_gate(gate(cluster, Scope::Event));
    state.interviews.directories().set_gate(gate(cluster, Scope::User));
    state.interviews.conversations().set_gate(interview_gate(cluster, &state.store));
    state.rooms.set_remote(Arc::new(RemoteRooms { cluster: cluster.clone(), auth: state.auth.clone() }));
}

fn gate(cluster: &Cluster, scope: fn(String) -> Scope) -> crate::actor::Gate {
    let cluster = cluster.clone();
    Arc::new(move |key| {
        let cluster = cluster.clone();
        Box::pin(async move {
            let scope = scope(key);
            match cluster.owner(&scope).await {
                Ok(Owner::Here) => true,
                Ok(Owner::There { node, .. }) => {
                    tracing::debug!(scope = %scope.key(), owner = %node, "not starting an actor another node owns");
                    false
                }
                Err(error) => {
                    tracing::warn!(scope = %scope.key(), %error, "could not read the lease; not starting the actor");
                    false
                }
            }
        })
    })
}

/// An interview actor starts where its user's scope is owned. The user is
/// read from the interview list; an interview not listed yet was just
/// created by its user's directory on this node, which owns the scope.
fn interview_gate(cluster: &Cluster, store: &EventStore) -> crate::actor::Gate {
    let cluster = cluster.clone();
    let store = store.clone();
    Arc::new(move |interview_id| {
        let cluster = cluster.clone();
        let store = store.clone();
        Box::pin(async move {
            let Some(user) = interview_user(&store, &interview_id).await else { return true };
            matches!(cluster.owner(&Scope::User(user)).await, Ok(Owner::Here))
        })
    })
}

async fn interview_user(store: &EventStore, interview_id: &str) -> Option<String> {
    let sql = "select user_id from interviews where interview_id = $1";
    let rows: Vec<(String,)> = store.query_as(sql, &[interview_id.into()]).await.ok()?;
    rows.into_iter().next().map(|(user,)| user)
}

/// Room commands from webhooks and the recording saga, which run on any
/// node, go to the room's owner over its internal route.
struct RemoteRooms {
    cluster: Cluster,
    auth: crate::auth::Authenticator,
}

impl crate::rooms::RemoteRooms for RemoteRooms {
    fn forward<'a>(
        &'a self,
        event_id: &'a str,
        command: &'a RoomCommand,
        metadata: &'a Metadata,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Result<Arc<str>, RoomFailure>>> + Send + 'a>> {
        Box::pin(async move {
            let url = match self.cluster.owner(&Scope::Event(event_id.to_owned())).await {
                Ok(Owner::Here) => return None,
                Ok(Owner::There { url, .. }) => url,
                Err(error) => {
                    tracing::warn!(event = %event_id, %error, "could not read the room's lease");
                    return Some(Err(Failure::Unavailable));
                }
            };
            let token = node_token(&self.auth, self.cluster.node_id(), event_id);
            let body = serde_json::json!({ "command": command, "metadata": metadata });
            let answer = self
                .cluster
                .http()
                .post(format!("{}/internal/rooms/{event_id}/command", url.trim_end_matches('/')))
                .bearer_auth(token)
                .header(FORWARDED_BY, self.cluster.node_id())
                .json(&body)
                .send()
                .await;
            // The owner's typed refusal does not cross the wire: a refused or
            // failed forward is logged and answered as unavailable.
            let outcome = match answer {
                Ok(answer) if answer.status().is_success() => {
                    answer.text().await.map(Arc::from).map_err(|e| e.to_string())
                }
                Ok(answer) => Err(format!("the owner answered {}", answer.status())),
                Err(error) => Err(format!("the owner is not answering: {error}")),
            };
            Some(outcome.map_err(|error| {
                tracing::warn!(event = %event_id, %error, "a room command forwarded to its owner failed");
                Failure::Unavailable
            }))
        })
    }
}

/// The subject prefix of the tokens nodes present to each other.
pub const NODE_SUBJECT_PREFIX: &str = "node:";

/// A one-minute token for one node's call to another, signed with the
/// service's secret (which all nodes share) and scoped to one event.
fn node_token(auth: &crate::auth::Authenticator, node_id: &str, event_id: &str) -> String {
    let claims = Claims {
        sub: format!("{NODE_SUBJECT_PREFIX}{node_id}"),
        exp: crate::store::now_millis() / 1000 + 60,
        name: None,
        role: Role::Moderator,
        events: Some(vec![event_id.to_owned()]),
    };
    auth.issue(&claims)
}

/// The scope whose owner fires `timer`: rooms by event, interviews by their
/// user (from the interview list; an interview not listed yet was just
/// created here, so it is fired here). Recording timers are the saga's,
/// which has a lease of its own; None for those.
pub async fn timer_scope(store: &EventStore, timer: &Timer) -> Option<Scope> {
    if let Some(event_id) = timer.owner.strip_prefix("room-") {
        return Some(Scope::Event(event_id.to_owned()));
    }
    let interview_id = timer.owner.strip_prefix(crate::interviews::TIMER_PREFIX)?;
    interview_user(store, interview_id).await.map(Scope::User)
}
