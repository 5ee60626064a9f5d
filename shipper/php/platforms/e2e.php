<?php
/**
 * End-to-end check of the agent inside a Debian root (platforms/test.sh):
 * the root's php-fpm serves a slow page with the agent prepended, the page
 * talks to a throwaway PostgreSQL cluster on the host over TCP loopback
 * through BitvilleApm\Pdo, and the record it leaves must carry the slow SQL,
 * the connection's application_name = bitville:<correlation id>, an Excimer
 * profile naming the slow function, and validate against the schema (the
 * PHP checker and the Rust validator named by BITVILLE_VALIDATE).
 *
 * Usage: php e2e.php <root> <php-fpm path inside the root>
 * Runs on the host's PHP; prints one line per check; exit 1 on a failure.
 */

require __DIR__ . '/../tests/support/PgCluster.php';
require __DIR__ . '/../tests/support/SchemaCheck.php';
require __DIR__ . '/../tests/support/FastCgi.php';

use BitvilleApm\Tests\FastCgi;
use BitvilleApm\Tests\PgCluster;
use BitvilleApm\Tests\SchemaCheck;

const PAGE = <<<'PHP'
<?php
function slow_report($db)
{
    $db->query('SELECT pg_sleep(0.2)')->fetchAll();
    $t = hrtime(true);
    while (hrtime(true) - $t < 150e6) {
    }
}
$db = new \BitvilleApm\Pdo($_SERVER['E2E_DSN'], 'postgres', null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$s = $db->prepare('SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()');
$s->execute();
$name = $s->fetchColumn();
slow_report($db);
echo bitville_apm_get_correlation_id(), ' ', $name, ' ', PHP_VERSION;
PHP;

exit(main($argv[1], $argv[2]));

function main($root, $fpm)
{
    $failures = 0;
    $check = function ($ok, $what) use (&$failures) {
        echo ($ok ? 'ok   ' : 'FAIL ') . $what . "\n";
        $failures += $ok ? 0 : 1;
    };
    $pg = PgCluster::shared();
    if (!$pg instanceof PgCluster) {
        echo "FAIL throwaway PostgreSQL cluster: $pg\n";
        return 1;
    }
    $dir = '/bitville/e2e';
    $host = $root . $dir;
    exec('rm -rf ' . escapeshellarg($host));
    mkdir("$host/spool", 0777, true);
    mkdir("$host/tmp", 01777, true);
    file_put_contents("$host/page.php", PAGE);
    file_put_contents("$host/profiling.ini", "[general]\nenabled = true\nthreshold_ms = 100\nproject_name = e2e\n"
        . "sample_rate = 0\n[profiling]\nprofiler = auto\nperiod_ms = 10\n[transmission]\nspool_dir = $dir/spool\n");
    touch("$host/profiling.ini", time() - 60);
    file_put_contents("$host/fpm.conf", "[global]\npid = $dir/fpm.pid\nerror_log = $dir/fpm.log\ndaemonize = no\n"
        . "[e2e]\nuser = root\ngroup = root\nlisten = $dir/fpm.sock\npm = static\npm.max_children = 1\n"
        . "env[BITVILLE_APM_CONFIG] = $dir/profiling.ini\n"
        . "php_admin_value[auto_prepend_file] = /bitville/shipper/php/bitville-apm.php\n"
        . "php_admin_value[sys_temp_dir] = $dir/tmp\n");
    $proc = proc_open(['chroot', $root, $fpm, '-F', '-R', '-y', "$dir/fpm.conf"],
        [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$host/fpm.out", 'w'], 2 => ['file', "$host/fpm.out", 'a']], $pipes);
    for ($i = 0; $i < 200 && !file_exists("$host/fpm.sock"); $i++) {
        usleep(50000);
    }
    $body = file_exists("$host/fpm.sock") ? fastcgi("$host/fpm.sock", "$dir/page.php", ['E2E_DSN' => $pg->dsn()]) : null;
    proc_terminate($proc, SIGQUIT);
    for ($i = 0; $i < 100 && proc_get_status($proc)['running']; $i++) {
        usleep(50000);
    }
    proc_close($proc);
    $check($body !== null, "php-fpm ($fpm) answered: " . trim((string) $body));
    $parts = explode(' ', trim((string) $body));
    $cid = $parts[0];
    $check(isset($parts[1]) && $parts[1] === 'bitville:' . $cid, 'the PostgreSQL session carried application_name bitville:<correlation id>');
    $files = glob("$host/spool/*.ndjson") ?: [];
    $lines = [];
    foreach ($files as $f) {
        foreach (file($f, FILE_IGNORE_NEW_LINES) as $line) {
            $lines[] = $line;
        }
    }
    $check(count($lines) === 1, 'one record in the spool (' . count($lines) . ')');
    if (count($lines) !== 1) {
        echo (string) @file_get_contents("$host/fpm.log");
        return 1;
    }
    $problems = SchemaCheck::line($lines[0], __DIR__ . '/../../../schemas/request.schema.json');
    $check($problems === [], 'the record follows request.schema.json ' . implode('; ', $problems));
    exec(getenv('BITVILLE_VALIDATE') . ' ' . implode(' ', array_map('escapeshellarg', $files)) . ' 2>&1', $out, $code);
    $check($code === 0, 'the Rust validator accepts the spool file ' . implode(' ', $out));
    $r = json_decode($lines[0], true);
    $check($r['correlation_id'] === $cid, 'the record carries the correlation id');
    $check($r['record_type'] === 'full' && $r['duration_ms'] >= 350, 'a full record of the slow request (' . $r['duration_ms'] . ' ms)');
    $check($r['runtime']['php_version'] === ($parts[2] ?? '?') && $r['runtime']['sapi'] === 'fpm-fcgi',
        'runtime: PHP ' . $r['runtime']['php_version'] . ', ' . $r['runtime']['sapi']);
    $sleep = null;
    foreach ($r['sql']['queries'] ?? [] as $q) {
        if ($q['sql'] === 'SELECT pg_sleep(?)') {
            $sleep = $q;
        }
    }
    $check($sleep !== null && $sleep['duration_ms'] >= 190, 'the slow statement, its literal replaced, with its time');
    $check($sleep !== null && ($sleep['frames'][0]['function'] ?? '') === 'slow_report', 'its calling function');
    $profile = $r['profile'] ?? [];
    $check(($profile['profiler'] ?? '') === 'excimer' && ($profile['total_samples'] ?? 0) >= 20,
        'an Excimer profile (' . ($profile['total_samples'] ?? 0) . ' samples)');
    $leaves = array_column($profile['leaves'] ?? [], 'samples', 'function');
    $check(isset($leaves['slow_report']) && $leaves['slow_report'] >= 8, 'the profile names slow_report as a leaf');
    $check(strpos($lines[0], 'BitvilleApm\\') === false, "the agent's own frames are folded away");
    return $failures === 0 ? 0 : 1;
}

/** One FastCGI request; returns the body, or null. */
function fastcgi($socket, $script, array $extra)
{
    $s = stream_socket_client('unix://' . $socket, $errno, $errstr, 5);
    if ($s === false) {
        return null;
    }
    stream_set_timeout($s, 30);
    $params = ['SCRIPT_FILENAME' => $script, 'SCRIPT_NAME' => '/page.php', 'REQUEST_URI' => '/page.php?x=1',
        'QUERY_STRING' => 'x=1', 'REQUEST_METHOD' => 'GET', 'GATEWAY_INTERFACE' => 'CGI/1.1',
        'SERVER_PROTOCOL' => 'HTTP/1.1', 'REMOTE_ADDR' => '127.0.0.1', 'HTTP_HOST' => 'e2e.test'] + $extra;
    $out = FastCgi\exchange($s, FastCgi\request($params));
    fclose($s);
    return FastCgi\body($out);
}
