<?php
/**
 * A throwaway PostgreSQL cluster (the newest installed major) for the tests: initdb into a temporary
 * folder owned by the postgres user (initdb and postgres refuse to run as
 * root), listening on a Unix socket in that folder and a free TCP port. One
 * cluster per PHPUnit process, stopped at exit.
 */

namespace BitvilleApm\Tests;

final class PgCluster
{
    /**
     * PostgreSQL's server binaries: BITVILLE_PG_BIN when set, else the
     * newest major under /usr/lib/postgresql (Debian's layout), as the Rust
     * harnesses find them (bitville_testkit::postgres_bindir).
     */
    public static function bin(): string
    {
        $env = getenv('BITVILLE_PG_BIN');
        if ($env !== false && $env !== '') {
            return $env;
        }
        $majors = [];
        foreach (glob('/usr/lib/postgresql/*/bin/initdb') ?: [] as $initdb) {
            $major = basename(dirname(dirname($initdb)));
            if (ctype_digit($major)) {
                $majors[(int) $major] = dirname($initdb);
            }
        }
        if ($majors === []) {
            return '';
        }
        krsort($majors);
        return reset($majors);
    }

    /** @var self|null */
    private static $shared;

    public $dir;
    public $port;

    /** The shared cluster, started on first use; a string says why it cannot run. */
    public static function shared()
    {
        if (self::$shared === null) {
            self::$shared = self::start();
            if (self::$shared instanceof self) {
                register_shutdown_function([self::$shared, 'stop']);
            }
        }
        return self::$shared;
    }

    /** @return self|string */
    private static function start()
    {
        $bin = self::bin();
        if ($bin === '' || !is_executable($bin . '/initdb')) {
            return 'PostgreSQL server binaries are not installed (Debian package postgresql, or set BITVILLE_PG_BIN)';
        }
        $c = new self();
        $c->dir = sys_get_temp_dir() . '/bitville-apm-pg-' . bin2hex(random_bytes(4));
        mkdir($c->dir . '/data', 0700, true);
        chmod($c->dir, 0755);
        $asPostgres = posix_getuid() === 0 ? 'runuser -u postgres -- ' : '';
        if ($asPostgres !== '') {
            exec('chown -R postgres:postgres ' . escapeshellarg($c->dir));
        }
        $sock = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
        socket_bind($sock, '127.0.0.1', 0);
        socket_getsockname($sock, $addr, $c->port);
        socket_close($sock);
        $data = escapeshellarg($c->dir . '/data');
        exec($asPostgres . $bin . '/initdb -A trust -U postgres -D ' . $data . ' >' . escapeshellarg($c->dir . '/initdb.log') . ' 2>&1', $o, $code);
        if ($code !== 0) {
            return 'initdb failed: ' . file_get_contents($c->dir . '/initdb.log');
        }
        $opts = escapeshellarg('-p ' . $c->port . ' -k ' . $c->dir . ' -c listen_addresses=127.0.0.1');
        exec($asPostgres . $bin . '/pg_ctl -w -t 60 -D ' . $data . ' -o ' . $opts . ' -l '
            . escapeshellarg($c->dir . '/pg.log') . ' start >/dev/null 2>&1', $o, $code);
        if ($code !== 0) {
            return 'pg_ctl start failed: ' . @file_get_contents($c->dir . '/pg.log');
        }
        return $c;
    }

    public function dsn()
    {
        return 'pgsql:host=127.0.0.1;port=' . $this->port . ';dbname=postgres';
    }

    public function stop()
    {
        $asPostgres = posix_getuid() === 0 ? 'runuser -u postgres -- ' : '';
        exec($asPostgres . self::bin() . '/pg_ctl -D ' . escapeshellarg($this->dir . '/data') . ' -m immediate stop >/dev/null 2>&1');
        exec('rm -rf ' . escapeshellarg($this->dir));
    }
}
