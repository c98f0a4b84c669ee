//! An instance's option file, start-up SQL and client option files, as plain text (no I/O here).

use crate::flavour::Flavour;
use std::collections::BTreeMap;
use std::path::Path;
use strata_model::role::{quote_ident, sql_string};
use strata_model::Role;

/// The control plane's own user on every instance.
pub const ROOT_USER: &str = "strata_root";
/// Internal users connect over loopback TCP only.
pub const INTERNAL_HOST: &str = "127.0.0.1";

pub struct OptionFile<'a> {
    pub flavour: &'a Flavour,
    pub datadir: &'a Path,
    pub port: u16,
    pub socket: &'a Path,
    pub pid_file: &'a Path,
    pub log_error: &'a Path,
    pub init_file: &'a Path,
    pub tmpdir: &'a Path,
    pub server_id: u32,
    pub production: bool,
    pub run_as_root: bool,
}

/// The server's `max_connections`: production branches take more clients.
pub fn max_connections(production: bool) -> usize {
    if production {
        1000
    } else {
        300
    }
}

/// Backend connections the gateway may hold to one instance, over all its pools: four fifths, so
/// deploys, backups and the control plane always find room.
pub fn gateway_connections(production: bool) -> usize {
    max_connections(production) * 4 / 5
}

impl OptionFile<'_> {
    /// Production branches get more memory and full durability; development branches are small and
    /// relax flushing (they hold no production data), which keeps hundreds of them cheap on one host.
    pub fn render(&self) -> String {
        // A production redo log large enough that a deploy's bulk copy or a data load does not
        // force a checkpoint every few megabytes (MariaDB resizes it at start when this changes).
        let max_connections = max_connections(self.production);
        let (buffer_pool, flush, sync_binlog, redo) = if self.production {
            ("128M", 1, 1, "256M")
        } else {
            ("32M", 2, 0, "16M")
        };
        let section = match self.flavour {
            Flavour::MariaDb => "mariadbd",
            Flavour::MySql => "mysqld",
        };
        let mut s = format!(
            "# Written by strata for this instance on every start; edits are overwritten.\n\
             [{section}]\n\
             datadir={datadir}\n\
             port={port}\n\
             bind-address=127.0.0.1\n\
             socket={socket}\n\
             pid-file={pid}\n\
             log-error={log}\n\
             init-file={init}\n\
             tmpdir={tmpdir}\n\
             server-id={server_id}\n\
             skip-name-resolve\n\
             character-set-server=utf8mb4\n\
             innodb_buffer_pool_size={buffer_pool}\n\
             innodb_flush_log_at_trx_commit={flush}\n\
             innodb_buffer_pool_dump_at_shutdown=OFF\n\
             innodb_buffer_pool_load_at_startup=OFF\n\
             max_connections={max_connections}\n\
             performance_schema=OFF\n\
             log-bin=binlog\n\
             binlog_format=ROW\n\
             binlog_row_image=FULL\n\
             innodb_autoinc_lock_mode=2\n\
             innodb_print_all_deadlocks=ON\n\
             sync_binlog={sync_binlog}\n\
             session_track_state_change=ON\n",
            datadir = self.datadir.display(),
            port = self.port,
            socket = self.socket.display(),
            pid = self.pid_file.display(),
            log = self.log_error.display(),
            init = self.init_file.display(),
            tmpdir = self.tmpdir.display(),
            server_id = self.server_id,
        );
        match self.flavour {
            // InnoDB only for the applications' tables (as on PlanetScale): the row limit, the
            // transaction limit and deploys undo and copy through transactions, which other engines
            // do not have. The control plane's own sessions lift it where it needs another engine
            // (`admin::allow_any_engine`).
            Flavour::MariaDb => s.push_str(&format!(
                "collation-server=utf8mb4_general_ci\n\
                 enforce_storage_engine=InnoDB\n\
                 innodb_log_file_size={redo}\n\
                 binlog_row_metadata=FULL\n\
                 log_bin_compress=OFF\n\
                 expire_logs_days=2\n\
                 plugin-load-add=ha_blackhole.so\n"
            )),
            Flavour::MySql => s.push_str(
                "collation-server=utf8mb4_0900_ai_ci\n\
                 binlog_row_metadata=FULL\n\
                 binlog_expire_logs_seconds=172800\n\
                 mysqlx=OFF\n",
            ),
        }
        if self.run_as_root {
            s.push_str("user=root\n");
        }
        s
    }
}

/// The internal users' plaintext passwords of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub root: String,
    pub roles: BTreeMap<Role, String>,
}

impl Credentials {
    pub fn generate() -> Self {
        Credentials {
            root: strata_model::ids::random_secret(32),
            roles: Role::ALL
                .iter()
                .map(|r| (*r, strata_model::ids::random_secret(32)))
                .collect(),
        }
    }

    pub fn password(&self, role: Role) -> &str {
        self.roles
            .get(&role)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// MySQL's stored form of a mysql_native_password password: `*` + hex(SHA1(SHA1(pw))).
pub fn native_hash(password: &str) -> String {
    let h = strata_model::credentials::PasswordHashes::from_plaintext(password);
    format!(
        "*{}",
        h.native
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

fn identified(flavour: &Flavour, password: &str) -> String {
    match flavour {
        // Only the hash goes into the file on disk.
        Flavour::MariaDb => format!("IDENTIFIED BY PASSWORD '{}'", native_hash(password)),
        // MySQL 8 has no portable hashed form for caching_sha2_password; the init file is 0600.
        Flavour::MySql => format!("IDENTIFIED BY '{}'", sql_string(password)),
    }
}

/// SQL run by the server at every start, before it accepts connections: it (re)asserts the control
/// plane's user, the database's schema, and one user per role with exactly that role's grants (on
/// a branch with safe migrations or without). Every statement is idempotent.
pub fn init_sql(
    flavour: &Flavour,
    schema: &str,
    creds: &Credentials,
    safe_migrations: bool,
) -> String {
    let mut out = Vec::new();
    let root = format!("'{ROOT_USER}'@'{INTERNAL_HOST}'");
    out.push(format!(
        "CREATE USER IF NOT EXISTS {root} {}",
        identified(flavour, &creds.root)
    ));
    out.push(format!(
        "ALTER USER {root} {}",
        identified(flavour, &creds.root)
    ));
    out.push(format!(
        "GRANT ALL PRIVILEGES ON *.* TO {root} WITH GRANT OPTION"
    ));
    out.push(format!(
        "CREATE DATABASE IF NOT EXISTS {} DEFAULT CHARACTER SET utf8mb4",
        quote_ident(schema)
    ));
    for role in Role::ALL {
        let user = format!("'{}'@'{INTERNAL_HOST}'", role.internal_user());
        let id = identified(flavour, creds.password(role));
        out.push(format!("CREATE USER IF NOT EXISTS {user} {id}"));
        out.push(format!("ALTER USER {user} {id}"));
        out.push(format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}"));
        out.push(format!(
            "GRANT {} ON {}.* TO {user}",
            role.privileges(safe_migrations),
            quote_ident(schema)
        ));
    }
    // No other account may log in: the datadir template comes with `root` (and possibly
    // anonymous) accounts without a password, reachable on loopback by any local process.
    out.push(
        "DELETE FROM mysql.global_priv WHERE User NOT LIKE 'strata\\_%' AND User <> 'mariadb.sys'"
            .into(),
    );
    out.push("DELETE FROM mysql.proxies_priv WHERE User NOT LIKE 'strata\\_%'".into());
    out.push("FLUSH PRIVILEGES".into());
    out.into_iter().map(|s| s + ";\n").collect()
}

/// The server user of one branch password. Each password has its own, with its role's
/// privileges: the server then keeps passwords apart in its processlist and for KILL, which one
/// shared user per role could not.
pub fn password_user(password_id: &str) -> String {
    format!("{PASSWORD_USER_PREFIX}{password_id}")
}

/// Every password user's name starts with this.
pub const PASSWORD_USER_PREFIX: &str = "strata_p_";

/// The statements that make a password's user (or make it whole again): its credential and its
/// role's privileges, granted to it directly (a server role would not do: MariaDB does not apply
/// a definer's default role, so a view the password made would lose its rights), then unlocked.
pub fn create_password_user(
    flavour: &Flavour,
    id: &str,
    role: Role,
    secret: &str,
    schema: &str,
    safe_migrations: bool,
) -> Vec<String> {
    let user = format!("'{}'@'{INTERNAL_HOST}'", password_user(id));
    // Unlocked last: a login in between is refused as locked (and retried), never let in with
    // privileges half given.
    vec![
        format!(
            "CREATE USER IF NOT EXISTS {user} {} ACCOUNT LOCK",
            identified(flavour, secret)
        ),
        format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}"),
        format!(
            "GRANT {} ON {}.* TO {user}",
            role.privileges(safe_migrations),
            quote_ident(schema)
        ),
        format!(
            "ALTER USER {user} {} ACCOUNT UNLOCK",
            identified(flavour, secret)
        ),
    ]
}

/// A password deleted or expired: its user can no longer log in. It is kept (locked, still
/// holding its role), so views it defined keep working.
pub fn lock_password_user(user: &str) -> String {
    format!(
        "ALTER USER '{}'@'{INTERNAL_HOST}' ACCOUNT LOCK",
        sql_string(user)
    )
}

/// The statement that puts a role user's credential back (see [`init_sql`]).
pub fn restore_role_password(flavour: &Flavour, role: Role, password: &str) -> String {
    format!(
        "ALTER USER '{}'@'{INTERNAL_HOST}' {}",
        role.internal_user(),
        identified(flavour, password)
    )
}

/// A `[client]` option file for one internal user, for `mariadb --defaults-extra-file=…`.
pub fn client_option_file(user: &str, password: &str, port: u16, schema: &str) -> String {
    format!(
        "# Internal credentials of this instance (strata); keep private.\n\
         [client]\nhost={INTERNAL_HOST}\nport={port}\nuser={user}\npassword={password}\ndatabase={schema}\n"
    )
}

/// Reads `password=` back from a client option file written by [`client_option_file`].
pub fn parse_client_password(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("password="))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn option_file_sizes_by_branch_kind() {
        let p = PathBuf::from("/d");
        let mut f = OptionFile {
            flavour: &Flavour::MariaDb,
            datadir: &p,
            port: 4000,
            socket: &p,
            pid_file: &p,
            log_error: &p,
            init_file: &p,
            tmpdir: &p,
            server_id: 7,
            production: false,
            run_as_root: true,
        };
        let dev = f.render();
        assert!(dev.starts_with("# Written by strata"));
        assert!(dev.contains("[mariadbd]\n"));
        assert!(dev.contains("innodb_buffer_pool_size=32M\n"));
        assert!(dev.contains("innodb_flush_log_at_trx_commit=2\n"));
        assert!(dev.contains("innodb_log_file_size=16M\n"));
        assert!(dev.contains("binlog_row_metadata=FULL\n"));
        assert!(dev.contains("user=root\n"));
        f.production = true;
        let prod = f.render();
        assert!(prod.contains("innodb_buffer_pool_size=128M\n"));
        assert!(prod.contains("sync_binlog=1\n"));
        assert!(prod.contains("innodb_log_file_size=256M\n"));
        f.flavour = &Flavour::MySql;
        let my = f.render();
        assert!(my.contains("[mysqld]\n") && !my.contains("log_bin_compress"));
    }

    #[test]
    fn init_sql_keeps_only_hashes_on_mariadb() {
        let creds = Credentials::generate();
        for safe in [false, true] {
            let sql = init_sql(&Flavour::MariaDb, "shop", &creds, safe);
            assert!(!sql.contains(&creds.root));
            for r in Role::ALL {
                assert!(!sql.contains(creds.password(r)));
                assert!(sql.contains(&format!(
                    "GRANT {} ON `shop`.* TO '{}'@'127.0.0.1'",
                    r.privileges(safe),
                    r.internal_user()
                )));
            }
        }
        let sql = init_sql(&Flavour::MariaDb, "shop", &creds, false);
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS `shop`"));
        assert_eq!(
            native_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }

    #[test]
    fn client_file_round_trip() {
        let t = client_option_file("strata_reader", "abc", 4000, "shop");
        assert_eq!(parse_client_password(&t).as_deref(), Some("abc"));
    }
}
