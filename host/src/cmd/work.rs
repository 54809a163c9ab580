//! The live worker pool of `healer run`: incidents decided `acting` come in
//! from ingestion at once, and a sweep of the store every interval finds
//! the rest (work another host decided, or left when it died: its lease
//! expired). At most `workers` incidents are driven at once, each under its
//! lease; an incident already in hand here is not taken twice. On stop, the
//! pool takes nothing new, and each worker finishes the step in hand and
//! hands its incident back (the lease released, the rest for whoever takes
//! it up next).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use healer::IncidentId;
use healer::pipeline::Handoff;
use tokio::sync::{Semaphore, mpsc, watch};

use super::run::Service;

/// How long a stopping host waits for the steps in hand.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Runs the pool until `stop`.
pub(super) async fn drive(
    service: Arc<Service>,
    mut incoming: mpsc::Receiver<Handoff>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(live) = service.live.as_ref() else {
        return;
    };
    let slots = Arc::new(Semaphore::new(live.workers));
    let in_hand: Arc<Mutex<HashSet<IncidentId>>> = Arc::default();
    let mut sweep = tokio::time::interval(live.interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let work: Vec<Handoff> = tokio::select! {
            _ = stop.changed() => break,
            Some(handoff) = incoming.recv() => vec![handoff],
            _ = sweep.tick() => {
                let pipeline = service.pipeline();
                match live.worker(&pipeline, &service.context).pending().await {
                    Ok(ids) => ids.into_iter().map(Handoff::from).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "Could not sweep the store for work.");
                        Vec::new()
                    }
                }
            }
        };
        while tasks.try_join_next().is_some() {}
        for handoff in work {
            let id = handoff.id.clone();
            if !lock(&in_hand).insert(id.clone()) {
                // Its lease (if handed on) is not needed: the one in hand
                // here is driven, or the next sweep takes it up.
                handoff.release(service.store()).await;
                continue;
            }
            // The slot is awaited in the task, so a full pool never keeps
            // this loop from seeing a stop or the next handoff.
            let (service, in_hand, slots) = (service.clone(), in_hand.clone(), slots.clone());
            tasks.spawn(async move {
                if let Ok(_slot) = slots.acquire_owned().await
                    && !service
                        .health
                        .stopping
                        .load(std::sync::atomic::Ordering::Relaxed)
                {
                    drive_one(&service, handoff).await;
                } else {
                    handoff.release(service.store()).await;
                }
                lock(&in_hand).remove(&id);
            });
        }
    }
    // Work handed on and not taken up goes back, for whoever sweeps next.
    incoming.close();
    while let Some(handoff) = incoming.recv().await {
        handoff.release(service.store()).await;
    }
    if tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "Steps still running after {STOP_GRACE:?}; their incidents resume elsewhere."
        );
        tasks.abort_all();
    }
}

fn lock(set: &Mutex<HashSet<IncidentId>>) -> std::sync::MutexGuard<'_, HashSet<IncidentId>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn drive_one(service: &Service, handoff: Handoff) {
    let Some(live) = service.live.as_ref() else {
        return;
    };
    let pipeline = service.pipeline();
    let mut worker = live.worker(&pipeline, &service.context);
    worker.stopping = Some(&service.health.stopping);
    let id = &handoff.id;
    let driven = match handoff.held {
        Some((lease, record)) => worker.drive_handed(lease, *record).await,
        None => worker.drive(id).await,
    };
    match driven {
        Ok(Some(r)) => tracing::debug!(incident = %id, state = %r.state, "Driven."),
        Ok(None) => tracing::debug!(incident = %id, "Another host holds the lease."),
        Err(e) => tracing::warn!(incident = %id, error = %e, "Driving failed; retried next sweep."),
    }
}
