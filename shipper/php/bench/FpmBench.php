<?php
/**
 * What the PHP-FPM benchmarks share (fpm.php times requests, instructions.php
 * counts their instructions): the agent's configs, a one-worker PHP-FPM
 * serving page.php, one request to it, and the loop's calibration.
 */

namespace BitvilleApm\Bench\Fpm;

require_once __DIR__ . '/../tests/support/FastCgi.php';

use BitvilleApm\Tests\FastCgi;

/** Config name => [enabled, the [profiling] section's lines]. */
const CONFIGS = [
    'off' => ['false', ''],
    'none' => ['true', "profiler = none\n"],
    'between_ticks' => ['true', "profiler = auto\nperiod_ms = 10\nexcimer_stop = between_ticks\n"],
    'at_once' => ['true', "profiler = auto\nperiod_ms = 10\nexcimer_stop = at_once\n"],
];

/**
 * Makes $root with the spool, state and temp folders and one INI file per
 * CONFIGS entry ($root/<name>.ini): no request is kept (a tiny sample rate,
 * so the draw still runs).
 */
function prepare($root)
{
    foreach (['spool', 'state', 'tmp'] as $dir) {
        mkdir("$root/$dir", 0777, true);
    }
    chmod("$root/tmp", 01777);
    foreach (CONFIGS as $name => list($enabled, $profiling)) {
        file_put_contents("$root/$name.ini", "[general]\nenabled = $enabled\nthreshold_ms = 100000\n"
            . "project_name = bench\nsample_rate = 0.000001\n[profiling]\n$profiling"
            . "[transmission]\nspool_dir = $root/spool\nstate_dir = $root/state\n");
        touch("$root/$name.ini", time() - 60); // settled, so the compiled copy is made at once
    }
}

/**
 * Starts PHP-FPM (PHP_FPM, else php-fpm8.2) in the foreground with one
 * static worker listening on $root/bench.sock, behind the command $wrapper
 * (valgrind, say) when one is given; a worker ends after $maxRequests
 * requests when that is not 0. Returns the process, once the socket is there.
 *
 * @return resource
 */
function start($root, array $wrapper = [], $maxRequests = 0)
{
    $root0 = posix_getuid() === 0;
    file_put_contents("$root/fpm.conf", "[global]\npid = $root/fpm.pid\nerror_log = $root/fpm.log\ndaemonize = no\n"
        . "[bench]\n" . ($root0 ? "user = root\ngroup = root\n" : '')
        . "listen = $root/bench.sock\npm = static\npm.max_children = 1\npm.max_requests = $maxRequests\n"
        . "php_admin_value[sys_temp_dir] = $root/tmp\nphp_admin_value[opcache.enable] = 1\n");
    $fpm = getenv('PHP_FPM') ?: 'php-fpm8.2';
    $cmd = array_merge($wrapper, [$fpm, '-F', '-y', "$root/fpm.conf"], $root0 ? ['-R'] : []);
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$root/fpm.out", 'w'],
        2 => ['file', "$root/fpm.out", 'a']], $pipes);
    if (!is_resource($proc)) {
        fwrite(STDERR, "cannot start $fpm\n");
        exit(1);
    }
    for ($i = 0; $i < 1200 && !file_exists("$root/bench.sock"); $i++) {
        usleep(50000);
    }
    if (!file_exists("$root/bench.sock")) {
        fwrite(STDERR, "$fpm did not start:\n" . @file_get_contents("$root/fpm.out"));
        exit(1);
    }
    return $proc;
}

/** The agent the page includes: BITVILLE_APM_BENCH_AGENT, else this checkout's. */
function agent()
{
    return realpath(getenv('BITVILLE_APM_BENCH_AGENT') ?: __DIR__ . '/../bitville-apm.php');
}

/**
 * One FastCGI request for page.php in $mode, the agent reading the config
 * $config (a path, or '' for none: PHP-FPM's getenv() returns FastCGI
 * parameters). Returns [start us, end us, whole request's wall us, page CPU
 * us], or null when the answer is not that.
 */
function request($root, $iterations, $mode, $config)
{
    $t = hrtime(true);
    $s = stream_socket_client('unix://' . $root . '/bench.sock', $errno, $errstr, 600);
    if ($s === false) {
        return null;
    }
    $params = ['SCRIPT_FILENAME' => __DIR__ . '/page.php', 'SCRIPT_NAME' => '/page.php',
        'REQUEST_URI' => '/page.php', 'REQUEST_METHOD' => 'GET', 'GATEWAY_INTERFACE' => 'CGI/1.1',
        'SERVER_PROTOCOL' => 'HTTP/1.1', 'BITVILLE_BENCH_AGENT' => agent(),
        'BITVILLE_BENCH_ITER' => (string) $iterations, 'BITVILLE_BENCH_MODE' => $mode,
        'BITVILLE_APM_CONFIG' => $config];
    stream_set_timeout($s, 600);
    $out = FastCgi\exchange($s, FastCgi\request($params));
    fclose($s);
    $wall = (hrtime(true) - $t) / 1e3;
    $answer = trim((string) substr($out, (int) strpos($out, "\r\n\r\n") + 4));
    if (!preg_match('/^(\d+) (\d+) (\d+)$/', $answer, $m)) {
        return null;
    }
    return [$m[1] / 1e3, $m[2] / 1e3, $wall, (float) $m[3]];
}

/** Iterations of the page's loop that take about 20 ms here (the fastest of several runs). */
function calibrate()
{
    $n = 200000;
    $best = PHP_INT_MAX;
    for ($r = 0; $r < 15; $r++) {
        $t = hrtime(true);
        $x = 0;
        for ($i = 0; $i < $n; $i++) {
            $x = ($x + $i * 7) % 1000003;
        }
        $best = min($best, hrtime(true) - $t);
    }
    // FPM runs the loop with opcache, faster than this script's own.
    return (int) ($n * 20e6 / max(1, $best) * 1.5);
}

/** The $p-th percentile of $v. */
function pct(array $v, $p)
{
    sort($v);
    return $v[(int) min(count($v) - 1, floor($p / 100 * count($v)))];
}
