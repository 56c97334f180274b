//! A real Docker engine for tests, through the `docker` CLI.
//!
//! No registry is reachable, so nothing here ever pulls: the test image is
//! built locally FROM scratch out of the host's static `/bin/busybox`
//! (Debian's `busybox-static`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::output_with_timeout;

/// The local test image that [`test_image`] builds.
pub const TEST_IMAGE: &str = "kaylee-test-busybox:latest";

/// Label put on every container that [`Container::run`] starts.
pub const TEST_LABEL: &str = "kaylee.test=harness";

/// Set to `1` to make [`require_docker!`](crate::require_docker) fail a test
/// instead of skipping it when no engine answers.
pub const REQUIRE_ENV: &str = "KAYLEE_REQUIRE_DOCKER";

const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a Docker engine answers (`docker info` succeeds). Asked once per
/// test process.
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let mut cmd = Command::new("docker");
        cmd.args(["info", "--format", "{{.ServerVersion}}"]);
        matches!(output_with_timeout(&mut cmd, Duration::from_secs(30)), Some(out) if out.status.success())
    })
}

/// Skips the calling test, loudly on stderr, when no Docker engine answers;
/// with `KAYLEE_REQUIRE_DOCKER=1` it fails the test instead.
///
/// ```ignore
/// #[test]
/// fn runs_a_container() {
///     require_docker!();
///     // ...
/// }
/// ```
#[macro_export]
macro_rules! require_docker {
    () => {
        if !$crate::support::docker::docker_available() {
            $crate::support::docker::report_skip();
            return;
        }
    };
}

/// What `require_docker!` does when no engine answers: fail when
/// `KAYLEE_REQUIRE_DOCKER=1`, otherwise print a loud skip notice.
pub fn report_skip() {
    skip_docker_test(
        "no Docker engine answers (`docker info` failed)",
        "Start the Docker daemon to run it",
    );
}

/// For a Docker test that cannot run here for `reason` (the caller returns
/// right after): fail when `KAYLEE_REQUIRE_DOCKER=1`, otherwise print a
/// loud skip notice saying `remedy`.
pub fn skip_docker_test(reason: &str, remedy: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{reason} and {REQUIRE_ENV}=1: {test}");
    }
    // Straight to the stderr handle: `eprintln!` is captured by the test
    // runner and would only be shown for a failing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n\
         ************************************************************************\n\
         SKIPPED: {reason}: {test}\n\
         This test did NOT run. {remedy},\n\
         or set {REQUIRE_ENV}=1 to make this a failure.\n\
         ************************************************************************\n"
    );
}

/// Runs `docker <args>` with a timeout; panics if it cannot be run or times
/// out, and returns its output whatever its exit status.
pub fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    output_with_timeout(&mut cmd, CLI_TIMEOUT)
        .unwrap_or_else(|| panic!("`docker {}` could not run or timed out", args.join(" ")))
}

/// Runs `docker <args>`, panics with its stderr unless it succeeds, and
/// returns its stdout trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    if !out.status.success() {
        panic!(
            "`docker {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the engine has an image by this name.
pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .status
        .success()
}

/// Builds (once per machine) and returns [`TEST_IMAGE`]: FROM scratch, the
/// host's `/bin/busybox` with its applets installed in `/bin`, `PATH=/bin`,
/// so `docker run <image> sleep 100` works. Never pulls. Safe when several
/// test processes call it at once (see [`busybox_image`]).
pub fn test_image() -> String {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| busybox_image(TEST_IMAGE)).clone()
}

/// Builds the busybox test image under `tag` unless the engine already has
/// an image by that name, and returns `tag`. A lock file serialises builds
/// across test processes; an existing image is kept as it is.
pub fn busybox_image(tag: &str) -> String {
    if image_exists(tag) {
        return tag.to_string();
    }
    let lock_path = std::env::temp_dir().join("kaylee-test-busybox-image.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {}: {e}", lock_path.display()));
    // Another process may have built it while we waited for the lock.
    if !image_exists(tag) {
        build_busybox_image(tag);
    }
    tag.to_string()
}

fn build_busybox_image(tag: &str) {
    let busybox = std::env::var_os("KAYLEE_TEST_BUSYBOX").unwrap_or_else(|| "/bin/busybox".into());
    let busybox = Path::new(&busybox);
    let context = tempfile::Builder::new()
        .prefix("kaylee-test-image-")
        .tempdir()
        .expect("creating a docker build context");
    fs::copy(busybox, context.path().join("busybox")).unwrap_or_else(|e| {
        panic!(
            "copying {} into the build context: {e}; install Debian's busybox-static \
             (deploy/test.sh does)",
            busybox.display()
        )
    });
    fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"-m\", \"1777\", \"/tmp\"]\n\
         ENV PATH=/bin\n\
         LABEL kaylee.test=harness\n",
    )
    .expect("writing the Dockerfile");
    let context_arg = context
        .path()
        .to_str()
        .expect("UTF-8 temp path")
        .to_string();
    let build = |buildkit: &str| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_BUILDKIT", buildkit).args([
            "build",
            "--pull=false",
            "--tag",
            tag,
            &context_arg,
        ]);
        output_with_timeout(&mut cmd, Duration::from_secs(300))
    };
    // The legacy builder needs no buildx plugin; BuildKit is the fallback
    // for engines that dropped the legacy builder. Neither pulls FROM scratch.
    let legacy = build("0");
    if matches!(&legacy, Some(out) if out.status.success()) {
        return;
    }
    let buildkit = build("1");
    if matches!(&buildkit, Some(out) if out.status.success()) {
        return;
    }
    let describe = |out: Option<Output>| match out {
        None => "could not run or timed out".to_string(),
        Some(out) => format!(
            "{}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    panic!(
        "building {tag} failed (is {} a static busybox, Debian's busybox-static?)\n\
         --- legacy builder: {}\n--- BuildKit: {}",
        busybox.display(),
        describe(legacy),
        describe(buildkit)
    );
}

/// Force-removes a container (and its anonymous volumes) by name or id;
/// quiet when it does not exist.
pub fn remove_container(name_or_id: &str) {
    let _ = docker(&["rm", "--force", "--volumes", name_or_id]);
}

/// A container that is force-removed when dropped.
#[derive(Debug)]
pub struct Container {
    id: String,
}

impl Container {
    /// `docker run -d --label kaylee.test=harness <args>`: `args` are
    /// whatever follows in a `docker run` command line, image and command
    /// included. Panics with docker's stderr when it fails.
    pub fn run(args: &[&str]) -> Container {
        let mut full = vec!["run", "--detach", "--label", TEST_LABEL];
        full.extend_from_slice(args);
        let out = docker(&full);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            // `docker run -d` may have created the container before failing
            // to start it; do not leave it behind.
            if !id.is_empty() {
                remove_container(&id);
            }
            panic!(
                "`docker {}` failed ({}):\n{}",
                full.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Container { id }
    }

    /// Takes charge of an existing container (for example one that the code
    /// under test created), so that it is removed on drop.
    pub fn adopt(name_or_id: &str) -> Container {
        Container {
            id: name_or_id.to_string(),
        }
    }

    /// The full container id (or the name given to [`Container::adopt`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's current name, without Docker's leading `/`.
    pub fn name(&self) -> String {
        self.inspect("{{.Name}}")
            .trim_start_matches('/')
            .to_string()
    }

    /// `docker rename`. The guard follows the container by its full id from
    /// then on, also when it was adopted by name.
    pub fn rename(&mut self, new_name: &str) {
        self.id = self.inspect("{{.Id}}");
        docker_ok(&["rename", &self.id, new_name]);
    }

    /// `docker stop --time 1`: SIGTERM, SIGKILL a second later (busybox as
    /// PID 1 ignores SIGTERM).
    pub fn stop(&self) {
        docker_ok(&["stop", "--time", "1", &self.id]);
    }

    /// `docker start`.
    pub fn start(&self) {
        docker_ok(&["start", &self.id]);
    }

    /// `docker kill` (SIGKILL).
    pub fn kill(&self) {
        docker_ok(&["kill", &self.id]);
    }

    /// `docker inspect --format <format>`, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.id])
    }

    /// Whether the container is running.
    pub fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// The container's IP address on its (first) network; empty when it has
    /// none (stopped, or `--network none`).
    pub fn ip(&self) -> String {
        self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// Its stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker exec <id> <cmd...>`; the output whatever the exit status.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut full = vec!["exec", self.id.as_str()];
        full.extend_from_slice(cmd);
        docker(&full)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove_container(&self.id);
    }
}
