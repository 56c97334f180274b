//! Where things live in etcd: Kaylee's own keys (docs/design.md §3) and
//! fleet's registry (docs/fleet-registry.md). Every key is built and parsed
//! here only: [`KayleeKeys`] under `--etcd-prefix`, the relative fleet
//! record keys ([`unit_record`], [`job_object`]…), and [`FleetKeys`] for
//! them under `--fleet-prefix`.

/// Kaylee's keyspace under `--etcd-prefix` (default `/kaylee`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KayleeKeys {
    prefix: String,
}

impl KayleeKeys {
    /// Keys under `prefix`; trailing `/`s are dropped, so `/kaylee` and
    /// `/kaylee/` are the same keyspace. An empty prefix puts the keys at
    /// the root (`/units/…`).
    pub fn new(prefix: &str) -> Self {
        KayleeKeys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    fn dir(&self, kind: &str) -> String {
        format!("{}/{kind}/", self.prefix)
    }

    /// `<prefix>/units/`: every unit's spec.
    pub fn units(&self) -> String {
        self.dir("units")
    }
    /// `<prefix>/units/<name>` → the unit's canonical JSON
    /// ([`crate::spec::Unit::to_json`]), written by `kaylee run` or by hand.
    pub fn unit(&self, name: &str) -> String {
        format!("{}{name}", self.units())
    }
    /// `<prefix>/restarts/`: every unit's restart marker.
    pub fn restarts(&self) -> String {
        self.dir("restarts")
    }
    /// `<prefix>/restarts/<name>` → the RFC 3339 time of the last
    /// `kaylee restart`; a new value rolls every replica.
    pub fn restart(&self, name: &str) -> String {
        format!("{}{name}", self.restarts())
    }
    /// `<prefix>/status/`: every unit's status, written by the leader.
    pub fn statuses(&self) -> String {
        self.dir("status")
    }
    /// `<prefix>/status/<name>` → the unit's
    /// [`UnitStatus`](crate::units::UnitStatus) as JSON.
    pub fn status(&self, name: &str) -> String {
        format!("{}{name}", self.statuses())
    }
    /// `<prefix>/leader/`: the election prefix. Each server campaigns with
    /// `<prefix>/leader/<lease id in hex>` → its identity, on its lease;
    /// the oldest key leads ([`crate::etcd::Election`]).
    pub fn leader(&self) -> String {
        self.dir("leader")
    }
    /// `<prefix>/instances/`: container IPs, `<machine>/<unit>/<container>`.
    pub fn instances(&self) -> String {
        self.dir("instances")
    }
    /// `<prefix>/instances/<machine>/`: every key one registrator owns.
    pub fn machine_instances(&self, machine: &str) -> String {
        format!("{}{machine}/", self.instances())
    }
    /// `<prefix>/instances/<machine>/<unit>/<container>` → the container's IP.
    pub fn instance(&self, machine: &str, unit: &str, container: &str) -> String {
        format!("{}{unit}/{container}", self.machine_instances(machine))
    }
    /// `<prefix>/health/<machine>/`.
    pub fn machine_healths(&self, machine: &str) -> String {
        format!("{}{machine}/", self.healths())
    }
    /// `<prefix>/health/<machine>/<unit>/<container>` → Docker's health.
    pub fn health(&self, machine: &str, unit: &str, container: &str) -> String {
        format!("{}{unit}/{container}", self.machine_healths(machine))
    }
    /// `<prefix>/config`: the cluster's render settings.
    pub fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }
    /// `<prefix>/probe`: read (never written) to see whether etcd answers.
    pub fn probe(&self) -> String {
        format!("{}/probe", self.prefix)
    }
    /// `<prefix>/health/`: Docker's health of containers that have a
    /// `HEALTHCHECK`, keyed like their instance key (whose value must stay
    /// the bare IP for DNS tools).
    pub fn healths(&self) -> String {
        self.dir("health")
    }
    /// `<prefix>/registrators/<machine>`: a Kaylee server registers that
    /// machine's containers (on the server's lease).
    pub fn registrators(&self) -> String {
        self.dir("registrators")
    }
    /// `<prefix>/registrators/<machine>`: present while a server registers
    /// that machine's containers.
    pub fn registrator(&self, machine: &str) -> String {
        format!("{}{machine}", self.registrators())
    }
    /// `<prefix>/history/`: every accepted spec revision of every unit.
    pub fn histories(&self) -> String {
        self.dir("history")
    }
    /// `<prefix>/history/<name>/`.
    pub fn history(&self, name: &str) -> String {
        format!("{}{name}/", self.histories())
    }
    /// `<prefix>/history/<name>/<revision>`, zero-padded so that keys sort
    /// as revisions do.
    pub fn history_revision(&self, name: &str, revision: u64) -> String {
        format!("{}{revision:010}", self.history(name))
    }
    /// The unit and revision of a history key.
    pub fn parse_history<'a>(&self, key: &'a str) -> Option<(&'a str, u64)> {
        let rest = key.strip_prefix(&self.histories())?;
        let (name, revision) = rest.split_once('/')?;
        let revision = revision.parse().ok().filter(|_| !revision.contains('+'))?;
        (!name.is_empty()).then_some((name, revision))
    }

    /// `<machine>/<unit>/<container>` of a key under `dir` (instances or
    /// health); anything else is not such a key.
    pub fn parse_placement<'a>(dir: &str, key: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
        let mut parts = key.strip_prefix(dir)?.split('/');
        let (machine, unit, container) = (parts.next()?, parts.next()?, parts.next()?);
        let ok = parts.next().is_none()
            && !machine.is_empty()
            && !unit.is_empty()
            && !container.is_empty();
        ok.then_some((machine, unit, container))
    }

    /// The unit name in a key directly under `dir` (`/kaylee/units/x` → `x`);
    /// deeper or empty names are not units.
    pub fn name_in<'a>(dir: &str, key: &'a str) -> Option<&'a str> {
        let name = key.strip_prefix(dir)?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// `unit/<sha1 hex>`: a unit file's text (fleet's `{"Raw":…}`), relative
/// to the fleet prefix.
pub fn unit_record(hash: &[u8; 20]) -> String {
    format!("unit/{}", hex::encode(hash))
}

/// `job/<name>/`: the directory destroying a job deletes.
pub fn job_dir(fleet_name: &str) -> String {
    format!("job/{fleet_name}/")
}

/// `job/<name>/object`: the job (its name and unit hash).
pub fn job_object(fleet_name: &str) -> String {
    format!("{}object", job_dir(fleet_name))
}

/// `job/<name>/target-state`: `launched`, `loaded` or `inactive`.
pub fn job_target_state(fleet_name: &str) -> String {
    format!("{}target-state", job_dir(fleet_name))
}

/// fleet's registry under `--fleet-prefix` (default `/_coreos.com/fleet/`),
/// restricted to unit names starting with `<unit-prefix>:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetKeys {
    /// fleet's registry prefix, always ending in `/`; fleet's default
    /// (`--etcd-key-prefix`) is `/_coreos.com/fleet/`.
    pub prefix: String,
    /// The first field of every fleet unit name Kaylee owns (`k` by
    /// default, `--unit-prefix`), without the `:` that follows it.
    pub unit_prefix: String,
}

/// What a key under `job/` says about one fleet unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobField {
    /// `job/<name>/object`: the job itself, `{"Name":…,"UnitHash":[…]}`.
    Object,
    /// `job/<name>/target-state`: what fleet is asked to do with it
    /// (`launched`, `loaded`, `inactive`).
    TargetState,
    /// `job/<name>/target`: the machine id fleet's engine scheduled it to;
    /// absent while unscheduled.
    Target,
}

impl FleetKeys {
    /// Keys under `prefix` (a `/` is appended when missing) for the fleet
    /// units named `<unit_prefix>:…`.
    pub fn new(prefix: &str, unit_prefix: &str) -> Self {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        FleetKeys {
            prefix,
            unit_prefix: unit_prefix.to_string(),
        }
    }

    /// Prefix of every job key Kaylee may own: `<fleet>job/<unit-prefix>:`.
    pub fn jobs(&self) -> String {
        format!("{}job/{}:", self.prefix, self.unit_prefix)
    }
    /// Prefix of every machine's object: `<fleet>machines/`.
    pub fn machines(&self) -> String {
        format!("{}machines/", self.prefix)
    }
    /// The machine of a `<fleet>machines/<id>/object` key.
    pub fn parse_machine<'a>(&self, key: &'a str) -> Option<&'a str> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("machines/")?;
        let id = rest.strip_suffix("/object")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }
    /// Prefix of every state key of Kaylee's units.
    pub fn states(&self) -> String {
        format!("{}states/{}:", self.prefix, self.unit_prefix)
    }
    /// Prefix of the job keys of one Kaylee unit.
    pub fn unit_jobs(&self, unit: &str) -> String {
        format!("{}{unit}:", self.jobs())
    }
    /// Prefix of the state keys of one Kaylee unit.
    pub fn unit_states(&self, unit: &str) -> String {
        format!("{}{unit}:", self.states())
    }
    /// The "directory" of one job; destroying a unit deletes it all.
    pub fn job(&self, fleet_name: &str) -> String {
        self.absolute(&job_dir(fleet_name))
    }
    /// A job's object key, absolute.
    pub fn object_of(&self, fleet_name: &str) -> String {
        self.absolute(&job_object(fleet_name))
    }
    /// A job's target-state key, absolute.
    pub fn target_state_of(&self, fleet_name: &str) -> String {
        self.absolute(&job_target_state(fleet_name))
    }
    /// A machine's object key, absolute: `<fleet>machines/<id>/object`.
    pub fn machine(&self, id: &str) -> String {
        format!("{}{id}/object", self.machines())
    }
    /// A record key relative to the fleet prefix, made absolute.
    pub fn absolute(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    /// `<fleet>job/<name>/object` → (name, Object).
    pub fn parse_job<'a>(&self, key: &'a str) -> Option<(&'a str, JobField)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("job/")?;
        let (name, field) = rest.rsplit_once('/')?;
        let field = match field {
            "object" => JobField::Object,
            "target-state" => JobField::TargetState,
            "target" => JobField::Target,
            _ => return None,
        };
        self.owns(name).then_some((name, field))
    }

    /// `<fleet>states/<name>/<machine>` → (name, machine).
    pub fn parse_state<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("states/")?;
        let (name, machine) = rest.split_once('/')?;
        (self.owns(name) && !machine.is_empty() && !machine.contains('/'))
            .then_some((name, machine))
    }

    /// Whether a fleet unit name is one of Kaylee's (the one rule:
    /// [`crate::fleet::naming::unit_of`]).
    fn owns(&self, fleet_name: &str) -> bool {
        crate::fleet::naming::unit_of(fleet_name, &self.unit_prefix).is_some()
    }

    /// The Kaylee unit a job or state key belongs to.
    pub fn unit_of_key<'a>(&self, key: &'a str) -> Option<&'a str> {
        let name = match self.parse_job(key) {
            Some((name, _)) => name,
            None => self.parse_state(key)?.0,
        };
        crate::fleet::naming::unit_of(name, &self.unit_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaylee_keys() {
        let k = KayleeKeys::new("/kaylee/");
        assert_eq!(k.unit("countly"), "/kaylee/units/countly");
        assert_eq!(k.restart("countly"), "/kaylee/restarts/countly");
        assert_eq!(k.status("countly"), "/kaylee/status/countly");
        assert_eq!(
            k.history_revision("web", 12),
            "/kaylee/history/web/0000000012"
        );
        assert_eq!(
            k.parse_history("/kaylee/history/web/0000000012"),
            Some(("web", 12))
        );
        assert_eq!(k.parse_history("/kaylee/history/web/x"), None);
        assert_eq!(
            KayleeKeys::parse_placement(&k.instances(), "/kaylee/instances/m1/web/k_web_1"),
            Some(("m1", "web", "k_web_1"))
        );
        assert_eq!(
            KayleeKeys::parse_placement(&k.instances(), "/kaylee/instances/m1/web"),
            None
        );
        assert_eq!(
            KayleeKeys::name_in(&k.units(), "/kaylee/units/x"),
            Some("x")
        );
        assert_eq!(KayleeKeys::name_in(&k.units(), "/kaylee/units/x/y"), None);
        assert_eq!(KayleeKeys::name_in(&k.units(), "/kaylee/units/"), None);
    }

    #[test]
    fn fleet_keys_only_own_the_unit_prefix() {
        let f = FleetKeys::new("/_coreos.com/fleet", "k");
        assert_eq!(f.jobs(), "/_coreos.com/fleet/job/k:");
        assert_eq!(
            f.parse_machine("/_coreos.com/fleet/machines/m1/object"),
            Some("m1")
        );
        assert_eq!(
            f.parse_machine("/_coreos.com/fleet/machines/m1/other"),
            None
        );
        let name = "k:countly:4f9a1c:dc608f:3.service";
        assert_eq!(
            f.parse_job(&format!("/_coreos.com/fleet/job/{name}/object")),
            Some((name, JobField::Object))
        );
        assert_eq!(
            f.parse_state(&format!("/_coreos.com/fleet/states/{name}/m1")),
            Some((name, "m1"))
        );
        assert_eq!(
            f.unit_of_key(&format!("/_coreos.com/fleet/states/{name}/m1")),
            Some("countly")
        );
        assert_eq!(
            f.parse_job("/_coreos.com/fleet/job/kk:x:a:b:1.service/object"),
            None
        );
        assert_eq!(
            f.parse_job("/_coreos.com/fleet/job/etcd.service/object"),
            None
        );
        assert_eq!(
            f.parse_job("/_coreos.com/fleet/job/k:handmade.service/object"),
            None,
            "a name under the prefix that Kaylee would never write"
        );
        assert_eq!(
            f.object_of(name),
            format!("/_coreos.com/fleet/job/{name}/object")
        );
        assert_eq!(
            f.target_state_of(name),
            format!("/_coreos.com/fleet/job/{name}/target-state")
        );
        assert_eq!(f.machine("m1"), "/_coreos.com/fleet/machines/m1/object");
        assert_eq!(
            unit_record(&[0xab; 20]),
            format!("unit/{}", "ab".repeat(20))
        );
        assert_eq!(
            f.parse_job(&format!("/_coreos.com/fleet/job/{name}/other")),
            None
        );
    }
}
