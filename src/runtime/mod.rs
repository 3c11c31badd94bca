//! The running graph: one supervised tokio task per component, bounded queues between them,
//! and the three operations that change it: [`Topology::start`], [`Topology::reload`] and
//! [`Topology::shutdown`].
//!
//! Queues, output fan-out lists and counters belong to the topology, not to the component
//! tasks, so a reload can rewire edges around components that keep running.

pub mod admin;
pub mod diff;
mod supervisor;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::channel::{Queue, Target};
use pitwall_api::http::{HttpServers, Mount};
use pitwall_api::{BuildContext, Component, ComponentMetrics, Output, Role, Shutdown};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Pipeline;
use admin::{AdminState, ComponentInfo, Status};
use diff::Diff;

/// A component that is running (or finished but not yet removed).
struct Slot {
    role: Role,
    queue: Option<Arc<Queue>>,
    shutdown: Shutdown,
    status: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

/// Why a pipeline could not be started or a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot build `{id}`: {message}")]
    Build { id: String, message: String },
    #[error("cannot serve the admin endpoint on {address}: {message}")]
    Admin { address: String, message: String },
}

/// How a shutdown went.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every component stopped, drained and flushed in time, and no sink lost anything.
    Clean,
    /// Everything stopped in time, but these sinks lost events they had accepted (a failed
    /// write) while running: `(id, events)`, by id.
    Lost(Vec<(String, u64)>),
    /// The deadline passed: these were aborted and may have lost queued events.
    DeadlineExceeded(Vec<String>),
}

pub struct Topology {
    pipeline: Pipeline,
    http: HttpServers,
    slots: HashMap<String, Slot>,
    outputs: HashMap<String, Output>,
    metrics: HashMap<String, Arc<ComponentMetrics>>,
    admin: Arc<AdminState>,
    admin_mount: Option<Mount>,
}

impl Topology {
    /// Build every component, then start them all. Nothing runs if any build fails.
    pub async fn start(pipeline: Pipeline, http: HttpServers) -> Result<Self, RuntimeError> {
        let admin = AdminState::new(pipeline.path.display().to_string());
        let mut topology = Topology {
            http,
            slots: HashMap::new(),
            outputs: HashMap::new(),
            metrics: HashMap::new(),
            admin,
            admin_mount: None,
            pipeline: empty_like(&pipeline),
        };
        let ids: Vec<String> = pipeline.components.keys().cloned().collect();
        let built = topology.build(&pipeline, ids.iter())?;
        topology.admin_mount = topology.mount_admin(&pipeline)?;
        topology.launch(&pipeline, built);
        topology.pipeline = pipeline;
        topology.publish_components();
        Ok(topology)
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn admin(&self) -> &Arc<AdminState> {
        &self.admin
    }

    pub fn http(&self) -> &HttpServers {
        &self.http
    }

    /// Change the running graph to `new`.
    ///
    /// The order matters, and mirrors what a user expects to survive:
    /// 1. Build every added or changed component first. A failure here (a port taken, a
    ///    file missing) drops what was built and returns: the old graph never noticed.
    /// 2. Rewire every output to the new graph's consumers. From here on, events for a
    ///    changed component queue up in its *new* queue while the old instance drains.
    /// 3. Stop removed and changed components: sources stop producing, others drain their
    ///    queue to the end and flush. Their resources (ports, files) are released.
    /// 4. Start the new instances, which take over those resources.
    ///
    /// Unchanged components are never touched, so their state and connected clients stay.
    pub async fn reload(&mut self, new: Pipeline) -> Result<Diff, RuntimeError> {
        let diff = Diff::between(&self.pipeline, &new);
        let built = self.build(&new, diff.to_build())?;
        let admin_mount = if new.admin != self.pipeline.admin {
            Some(self.mount_admin_replacing(&new)?)
        } else {
            None
        };

        // 2: new queues for the new instances, then every output to its new consumers.
        let mut new_queues = HashMap::new();
        for id in diff.to_build() {
            let decl = &new.components[id];
            if decl.role != Role::Source {
                new_queues.insert(
                    id.clone(),
                    Queue::new(new.runtime.queue_batches, self.metrics_of(id)),
                );
            }
        }
        for id in &diff.removed {
            if let Some(output) = self.outputs.get(id) {
                output.set_targets(Vec::new());
            }
        }
        let queue_of = |id: &str| -> Option<Arc<Queue>> {
            new_queues
                .get(id)
                .cloned()
                .or_else(|| self.slots.get(id).and_then(|slot| slot.queue.clone()))
        };
        let targets = targets_of(&new, &queue_of);
        for id in new.components.keys() {
            let output = self.output_of(id);
            output.set_targets(targets.get(id).cloned().unwrap_or_default());
        }

        // 3: drain and stop what goes away or is replaced.
        let deadline = Duration::from_millis(new.runtime.shutdown_timeout_ms);
        let stopping: Vec<String> = diff.to_stop().cloned().collect();
        for id in &stopping {
            if let Some(slot) = self.slots.get(id) {
                slot.shutdown.trigger();
                if let Some(queue) = &slot.queue {
                    queue.close();
                }
            }
        }
        for id in &stopping {
            if let Some(slot) = self.slots.remove(id) {
                stop_slot(id, slot, deadline).await;
            }
        }
        for id in &diff.removed {
            self.outputs.remove(id);
        }
        if let Some(mount) = admin_mount {
            self.admin_mount = mount;
        }

        // 4: start the new instances on their queues.
        self.launch_with_queues(&new, built, new_queues);
        self.pipeline = new;
        self.publish_components();
        Ok(diff)
    }

    /// Stop sources, let transforms drain and sinks flush, all within the configured
    /// deadline; abort whatever is left after it.
    pub async fn shutdown(mut self) -> Stopped {
        let deadline =
            Instant::now() + Duration::from_millis(self.pipeline.runtime.shutdown_timeout_ms);
        for slot in self.slots.values() {
            if slot.role == Role::Source {
                slot.shutdown.trigger();
            }
        }
        self.drain_until(deadline).await;
        let mut aborted = Vec::new();
        for (id, slot) in self.slots.drain() {
            if !slot.task.is_finished() {
                slot.task.abort();
                aborted.push(id);
            }
        }
        self.admin_mount = None;
        if !aborted.is_empty() {
            aborted.sort();
            return Stopped::DeadlineExceeded(aborted);
        }
        // Counters outlive reloads, so a sink removed by an edit still reports its loss.
        let mut lost: Vec<(String, u64)> = self
            .metrics
            .iter()
            .map(|(id, metrics)| (id.clone(), metrics.snapshot().lost))
            .filter(|(_, lost)| *lost > 0)
            .collect();
        if lost.is_empty() {
            Stopped::Clean
        } else {
            lost.sort();
            Stopped::Lost(lost)
        }
    }

    /// Whether every source has finished (a replay or conversion reached its end).
    pub fn sources_finished(&self) -> bool {
        self.slots
            .values()
            .filter(|slot| slot.role == Role::Source)
            .all(|slot| slot.task.is_finished())
    }

    /// Close each queue once all of its producers are done, so everything drains in graph
    /// order. Components in a loop never see their producers finish first: once nothing
    /// else can progress, their queues are closed together.
    async fn drain_until(&mut self, deadline: Instant) {
        let mut closed: HashSet<String> = HashSet::new();
        let mut idle_rounds = 0;
        loop {
            let finished: HashSet<&str> = self
                .slots
                .iter()
                .filter(|(_, slot)| slot.task.is_finished())
                .map(|(id, _)| id.as_str())
                .collect();
            if finished.len() == self.slots.len() || Instant::now() >= deadline {
                return;
            }
            let mut progressed = false;
            for (id, decl) in &self.pipeline.components {
                let Some(slot) = self.slots.get(id) else {
                    continue;
                };
                if slot.role == Role::Source || closed.contains(id) {
                    continue;
                }
                let producers_done = decl.inputs.iter().all(|input| {
                    !self.slots.contains_key(&input.from) || finished.contains(input.from.as_str())
                });
                if producers_done || idle_rounds > 250 {
                    if let Some(queue) = &slot.queue {
                        queue.close();
                    }
                    closed.insert(id.clone());
                    progressed = true;
                }
            }
            idle_rounds = if progressed { 0 } else { idle_rounds + 1 };
            // Polling keeps this simple; at 2 ms it adds nothing noticeable to a shutdown.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn metrics_of(&mut self, id: &str) -> Arc<ComponentMetrics> {
        self.metrics.entry(id.to_string()).or_default().clone()
    }

    fn output_of(&mut self, id: &str) -> Output {
        let metrics = self.metrics_of(id);
        self.outputs
            .entry(id.to_string())
            .or_insert_with(|| Output::new(metrics))
            .clone()
    }

    fn build<'a>(
        &self,
        pipeline: &Pipeline,
        ids: impl Iterator<Item = &'a String>,
    ) -> Result<HashMap<String, Box<dyn Component>>, RuntimeError> {
        let mut built = HashMap::new();
        for id in ids {
            let decl = &pipeline.components[id];
            let ctx = self.build_context(pipeline, id);
            let component = decl
                .config
                .build(&ctx)
                .map_err(|error| RuntimeError::Build {
                    id: id.clone(),
                    message: error.to_string(),
                })?;
            built.insert(id.clone(), component);
        }
        Ok(built)
    }

    fn build_context(&self, pipeline: &Pipeline, id: &str) -> BuildContext {
        BuildContext {
            id: id.into(),
            base_dir: pipeline.base_dir.clone(),
            http: self.http.clone(),
        }
    }

    fn launch(&mut self, pipeline: &Pipeline, built: HashMap<String, Box<dyn Component>>) {
        let mut queues = HashMap::new();
        for (id, decl) in &pipeline.components {
            if decl.role != Role::Source {
                queues.insert(
                    id.clone(),
                    Queue::new(pipeline.runtime.queue_batches, self.metrics_of(id)),
                );
            }
        }
        let targets = targets_of(pipeline, &|id| queues.get(id).cloned());
        for id in pipeline.components.keys() {
            let output = self.output_of(id);
            output.set_targets(targets.get(id).cloned().unwrap_or_default());
        }
        self.launch_with_queues(pipeline, built, queues);
    }

    fn launch_with_queues(
        &mut self,
        pipeline: &Pipeline,
        built: HashMap<String, Box<dyn Component>>,
        mut queues: HashMap<String, Arc<Queue>>,
    ) {
        // Start in file order, which keeps logs readable.
        let mut built = built;
        for (id, decl) in &pipeline.components {
            let Some(component) = built.remove(id) else {
                continue;
            };
            let queue = queues.remove(id);
            let shutdown = Shutdown::new();
            let status = Arc::new(AtomicU8::new(Status::Running as u8));
            let io = pitwall_api::Io {
                id: id.as_str().into(),
                input: queue.clone().map(pitwall_api::Input::new),
                output: self.output_of(id),
                shutdown: shutdown.clone(),
                metrics: self.metrics_of(id),
            };
            let ctx = self.build_context(pipeline, id);
            let task = tokio::spawn(supervisor::supervise(
                component,
                io,
                decl.config.clone(),
                ctx,
                status.clone(),
            ));
            self.slots.insert(
                id.clone(),
                Slot {
                    role: decl.role,
                    queue,
                    shutdown,
                    status,
                    task,
                },
            );
        }
    }

    fn mount_admin(&self, pipeline: &Pipeline) -> Result<Option<Mount>, RuntimeError> {
        let Some(settings) = &pipeline.admin else {
            return Ok(None);
        };
        let error = |message: String| RuntimeError::Admin {
            address: settings.address.clone(),
            message,
        };
        let address =
            pitwall_api::component::parse_listen_address(&settings.address).map_err(error)?;
        let server = self
            .http
            .acquire(address)
            .map_err(|e| error(e.to_string()))?;
        let mount = server
            .mount("admin", admin::router(self.admin.clone()))
            .map_err(error)?;
        Ok(Some(mount))
    }

    /// A new admin mount for a reload; the old one is unmounted first so the routes can move.
    fn mount_admin_replacing(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<Option<Mount>, RuntimeError> {
        let previous = self.admin_mount.take();
        match self.mount_admin(pipeline) {
            Ok(mount) => Ok(mount),
            Err(error) => {
                self.admin_mount = previous;
                Err(error)
            }
        }
    }

    fn publish_components(&self) {
        let infos = self
            .pipeline
            .components
            .values()
            .filter_map(|decl| {
                let slot = self.slots.get(&decl.id)?;
                Some(ComponentInfo {
                    id: decl.id.clone(),
                    kind: decl.role.name(),
                    type_name: decl.type_name.clone(),
                    metrics: self.metrics.get(&decl.id)?.clone(),
                    status: slot.status.clone(),
                })
            })
            .collect();
        self.admin.set_components(infos);
    }
}

/// The downstream edges of every component in `pipeline`.
fn targets_of(
    pipeline: &Pipeline,
    queue_of: &dyn Fn(&str) -> Option<Arc<Queue>>,
) -> HashMap<String, Vec<Target>> {
    let mut targets: HashMap<String, Vec<Target>> = HashMap::new();
    for (id, decl) in &pipeline.components {
        let Some(queue) = queue_of(id) else { continue };
        for input in &decl.inputs {
            targets.entry(input.from.clone()).or_default().push(Target {
                consumer: id.as_str().into(),
                queue: queue.clone(),
                when_full: input.when_full,
            });
        }
    }
    targets
}

/// Wait for a stopping component (already signalled) to finish; abort it after `deadline`.
async fn stop_slot(id: &str, slot: Slot, deadline: Duration) {
    let mut task = slot.task;
    if tokio::time::timeout(deadline, &mut task).await.is_err() {
        tracing::warn!(
            component = id,
            "did not stop within {deadline:?}; aborting it"
        );
        task.abort();
    }
    slot.status.store(Status::Stopped as u8, Ordering::Relaxed);
}

/// A pipeline with no components, standing in before the first start.
fn empty_like(pipeline: &Pipeline) -> Pipeline {
    Pipeline {
        path: pipeline.path.clone(),
        base_dir: pipeline.base_dir.clone(),
        source: pipeline.source.clone(),
        components: Default::default(),
        admin: None,
        runtime: pipeline.runtime.clone(),
        warnings: Vec::new(),
    }
}
