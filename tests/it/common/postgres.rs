//! A throwaway PostgreSQL server for tests and the benchmark: a fresh
//! cluster from the Debian packages in a temporary directory, listening on a
//! free loopback port only. It never skips: when PostgreSQL is missing the
//! test fails, naming the package to install, so CI proves the PostgreSQL
//! tests ran. Tests run it with `fsync=off`; the benchmark with PostgreSQL's
//! own durable defaults.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Starts with `-c listen_addresses=127.0.0.1`; another process can take the
/// free port between our probe and the server's bind, so a few tries.
const START_ATTEMPTS: usize = 3;

/// A running PostgreSQL cluster, stopped and deleted on drop.
pub struct TestPostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`, trust authentication.
    pub url: String,
    pub port: u16,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    /// Initdb refuses to run as root, so as root every command runs as `postgres`.
    run_as_postgres: bool,
    /// `-c NAME=VALUE` settings beyond the listen address.
    settings: &'static str,
    dir: tempfile::TempDir,
}

impl TestPostgres {
    /// Initializes and starts a cluster for tests (no fsync); panics with the
    /// reason (and the tools' output and the server log) when it cannot.
    pub fn start() -> TestPostgres {
        TestPostgres::start_with("-c fsync=off")
    }

    /// As [`TestPostgres::start`], with PostgreSQL's durable defaults
    /// (fsync on, synchronous commit): what a benchmark of production load needs.
    pub fn start_durable() -> TestPostgres {
        TestPostgres::start_with("")
    }

    fn start_with(settings: &'static str) -> TestPostgres {
        let bin_dir = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb and pg_ctl were not found (looked at `pg_config --bindir`, \
                 /usr/lib/postgresql/*/bin and PATH): install the Debian package postgresql \
                 (apt-get install postgresql)"
            )
        });
        let run_as_postgres = running_as_root();
        if run_as_postgres {
            let known = Command::new("id").args(["-u", "postgres"]).output();
            if !known.is_ok_and(|output| output.status.success()) {
                panic!(
                    "running as root, but there is no `postgres` user to run initdb as: \
                     install the Debian package postgresql, which creates it"
                );
            }
        }

        // Under /tmp so that `postgres` can reach it, and short enough for the
        // unix socket path limit.
        let dir = tempfile::Builder::new()
            .prefix("registrar-pg-")
            .tempdir_in("/tmp")
            .expect("a temporary directory under /tmp");
        if run_as_postgres {
            run_checked(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.path()),
                "chown the temporary directory to postgres",
            );
        }
        let data_dir = dir.path().join("data");
        let log_file = dir.path().join("log");

        let mut postgres = TestPostgres {
            url: String::new(),
            port: 0,
            bin_dir,
            data_dir,
            log_file,
            run_as_postgres,
            settings,
            dir,
        };
        let data_dir = postgres.data_dir.display().to_string();
        let mut initdb = postgres.command("initdb");
        run_checked(
            initdb.args([
                "-D",
                &data_dir,
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                // the machine's LANG may name a locale that is not installed
                "--no-locale",
            ]),
            "initdb",
        );

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_loopback_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 {}",
                postgres.dir.path().display(),
                postgres.settings
            );
            let log_file = postgres.log_file.display().to_string();
            let output = postgres
                .command("pg_ctl")
                .args(["-D", &data_dir, "-l", &log_file, "-o", &options, "-w"])
                .args(["-t", "60", "start"])
                .output()
                .expect("pg_ctl can be run");
            if output.status.success() {
                postgres.port = port;
                postgres.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                return postgres;
            }
            let log = postgres.server_log();
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            failures.push(format!(
                "pg_ctl start on port {port}: {}\nserver log:\n{log}",
                describe(&output)
            ));
            if !port_taken {
                break;
            }
        }
        panic!(
            "PostgreSQL did not start in {}:\n{}",
            postgres.dir.path().display(),
            failures.join("\n")
        );
    }

    /// [`TestPostgres::start`] off the async runtime's threads; its panic
    /// (and message) carries over to the calling test.
    pub async fn start_async() -> TestPostgres {
        match tokio::task::spawn_blocking(TestPostgres::start).await {
            Ok(postgres) => postgres,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping its data.
    pub fn stop(&self) {
        let data_dir = self.data_dir.display().to_string();
        run_checked(
            self.command("pg_ctl")
                .args(["-D", &data_dir, "-m", "fast", "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&self) {
        let data_dir = self.data_dir.display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.dir.path().display(),
            self.settings
        );
        let log_file = self.log_file.display().to_string();
        run_checked(
            self.command("pg_ctl")
                .args(["-D", &data_dir, "-l", &log_file, "-o", &options, "-w"])
                .args(["-t", "60", "start"]),
            "pg_ctl start again",
        );
    }

    /// A new, empty database on this server: its URL.
    pub fn create_database(&self, name: &str) -> String {
        let port = self.port.to_string();
        run_checked(
            self.command("createdb")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name]),
            "createdb",
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The one value `sql` selects in database `name`, as psql prints it.
    pub fn query(&self, name: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let output = run_checked(
            self.command("psql")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", name])
                .args(["-tA", "-c", sql]),
            "psql",
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The server's log so far, for failure messages.
    pub fn server_log(&self) -> String {
        fs::read_to_string(&self.log_file)
            .unwrap_or_else(|error| format!("(no log at {}: {error})", self.log_file.display()))
    }

    /// `tool` from PostgreSQL's bin directory, as `postgres` when we are root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        let mut command = if self.run_as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        // the test's working directory may not be readable by `postgres`
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data_dir = self.data_dir.display().to_string();
        let stopped = self
            .command("pg_ctl")
            .args(["-D", &data_dir, "-m", "immediate", "-w", "stop"])
            .output();
        if let Ok(output) = &stopped
            && !output.status.success()
            && self.data_dir.join("postmaster.pid").exists()
        {
            eprintln!("could not stop the test PostgreSQL: {}", describe(output));
        }
        // the TempDir field removes the directory (root may remove postgres's files)
    }
}

/// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, else the
/// newest `/usr/lib/postgresql/*/bin`, else wherever `initdb` is on PATH.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_tools(dir)) {
        return Some(dir);
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| has_tools(dir))
}

fn running_as_root() -> bool {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .expect("`id -u` can be run");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// A loopback port nothing listens on right now.
/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn run_checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: could not run {command:?}: {error}"));
    if !output.status.success() {
        panic!("{what} failed: {command:?}\n{}", describe(&output));
    }
    output
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
