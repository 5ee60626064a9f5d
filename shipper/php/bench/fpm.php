<?php
/**
 * The agent's cost inside real PHP-FPM (issue #20 "Done when"): every
 * request forgets statics, the agent's files are included per request (from
 * opcache), and the config comes from the compiled copy.
 * Usage: php shipper/php/bench/fpm.php [rounds]
 * (needs php-fpm8.2, or the binary named by PHP_FPM).
 *
 * One PHP-FPM worker serves the same ~20 ms page in five modes, interleaved
 * in a rotating order, so every comparison is paired and no mode gets a
 * worker of its own (where the scheduler places a worker stays for a run,
 * which pairing across workers cannot undo):
 * - off: the page without the agent;
 * - floor: the page with only the calls any agent with these features must
 *   make, inline: Excimer start and stop, getrusage() at both ends, a
 *   shutdown function, error_get_last(), one CSPRNG draw, getenv();
 * - agent: the agent included and enabled, profiler = auto (Excimer in the
 *   chosen mode: stopped between ticks when older than 1.2.4) at 10 ms;
 * - at once: the same with excimer_stop = at_once;
 * - no profiler: the agent with profiler = none, whose own floor is the
 *   floor's calls without Excimer.
 * Each mode's config reaches the agent as a FastCGI parameter, which
 * PHP-FPM's getenv() returns. The page times the agent's include and boot
 * (its first statement) and, from a shutdown function registered after the
 * agent's, the time from the end of its work to after the agent's finish().
 * Fixed cost = start + (end minus the same end in the off mode). The page's
 * CPU time (getrusage() at its first statement and in its last shutdown
 * function: all of the worker's threads, Excimer's included) and the whole
 * request's wall time seen by the client are paired with the off request of
 * the same round. The sample rate is tiny, so the draw runs but no request
 * is kept.
 */

require __DIR__ . '/../tests/support/FastCgi.php';

use BitvilleApm\Tests\FastCgi;

const PER_REQUEST_SCRIPT = <<<'PHP'
<?php
$u0 = getrusage();
$t0 = hrtime(true);
$mode = $_SERVER['BITVILLE_BENCH_MODE'];
if ($mode === 'floor' || $mode === 'floor_none') {
    $path = getenv('BITVILLE_APM_CONFIG');
    $e = null;
    if ($mode === 'floor') {
        $e = new ExcimerProfiler();
        $e->setPeriod(0.01);
        $e->start();
    }
    $u = getrusage();
    register_shutdown_function(function () use ($e) {
        if ($e !== null) {
            $e->stop();
        }
        $last = error_get_last();
        $u = getrusage();
        $draw = random_int(0, 999999);
    });
} elseif ($mode !== 'off') {
    require $_SERVER['BITVILLE_BENCH_AGENT'];
}
$t1 = hrtime(true);
$n = (int) $_SERVER['BITVILLE_BENCH_ITER'];
$x = 0;
for ($i = 0; $i < $n; $i++) {
    $x = ($x + $i * 7) % 1000003;
}
$t2 = hrtime(true);
register_shutdown_function(function () use ($t0, $t1, $t2, $u0) {
    $end = hrtime(true);
    $u1 = getrusage();
    $cpu = 0;
    foreach (['ru_utime', 'ru_stime'] as $k) {
        $cpu += ($u1["$k.tv_sec"] - $u0["$k.tv_sec"]) * 1000000 + $u1["$k.tv_usec"] - $u0["$k.tv_usec"];
    }
    echo $t1 - $t0, ' ', $end - $t2, ' ', $cpu;
});
PHP;

/** Mode => [label, config file (null: none), the floor it is compared with]. */
const MODES = [
    'off' => ['off (no agent)', null, null],
    'floor' => ['floor (unavoidable calls)', 'off', null],
    'agent' => ['agent, profiler = auto', 'between_ticks', 'floor'],
    'at_once' => ['agent, excimer_stop = at_once', 'at_once', 'floor'],
    'floor_none' => ['floor without Excimer', 'off', null],
    'none' => ['agent, profiler = none', 'none', 'floor_none'],
];

main(max(10, (int) ($argv[1] ?? 300)));

function main($rounds)
{
    $fpm = getenv('PHP_FPM') ?: 'php-fpm8.2';
    $agent = realpath(getenv('BITVILLE_APM_BENCH_AGENT') ?: __DIR__ . '/../bitville-apm.php');
    $root = sys_get_temp_dir() . '/bitville-apm-fpm-bench-' . getmypid();
    foreach (['spool', 'state', 'tmp'] as $dir) {
        mkdir("$root/$dir", 0777, true);
    }
    chmod("$root/tmp", 01777);
    file_put_contents("$root/work.php", PER_REQUEST_SCRIPT);
    // Config name => [enabled, the [profiling] section's lines].
    $configs = [
        'off' => ['false', ''],
        'none' => ['true', "profiler = none\n"],
        'between_ticks' => ['true', "profiler = auto\nperiod_ms = 10\nexcimer_stop = between_ticks\n"],
        'at_once' => ['true', "profiler = auto\nperiod_ms = 10\nexcimer_stop = at_once\n"],
    ];
    foreach ($configs as $name => list($enabled, $profiling)) {
        file_put_contents("$root/$name.ini", "[general]\nenabled = $enabled\nthreshold_ms = 100000\n"
            . "project_name = bench\nsample_rate = 0.000001\n[profiling]\n$profiling"
            . "[transmission]\nspool_dir = $root/spool\nstate_dir = $root/state\n");
        touch("$root/$name.ini", time() - 60); // settled, so the compiled copy is made at once
    }
    $root0 = posix_getuid() === 0;
    file_put_contents("$root/fpm.conf", "[global]\npid = $root/fpm.pid\nerror_log = $root/fpm.log\ndaemonize = no\n"
        . "[bench]\n" . ($root0 ? "user = root\ngroup = root\n" : '')
        . "listen = $root/bench.sock\npm = static\npm.max_children = 1\n"
        . "php_admin_value[sys_temp_dir] = $root/tmp\nphp_admin_value[opcache.enable] = 1\n");
    $cmd = array_merge([$fpm, '-F', '-y', "$root/fpm.conf"], $root0 ? ['-R'] : []);
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$root/fpm.out", 'w'],
        2 => ['file', "$root/fpm.out", 'a']], $pipes);
    if (!is_resource($proc)) {
        fwrite(STDERR, "cannot start $fpm\n");
        exit(1);
    }
    $modes = array_keys(MODES);
    $data = array_fill_keys($modes, []);
    try {
        for ($i = 0; $i < 100 && !file_exists("$root/bench.sock"); $i++) {
            usleep(50000);
        }
        $iterations = calibrate();
        for ($i = 0; $i < $rounds + 5; $i++) {
            $round = [];
            foreach (rotate($modes, $i) as $mode) {
                $config = MODES[$mode][1] === null ? '' : $root . '/' . MODES[$mode][1] . '.ini';
                $round[$mode] = request("$root/bench.sock", "$root/work.php", $agent, $iterations, $mode, $config);
            }
            if ($i >= 5 && !in_array(null, $round, true)) { // the first ones compile and warm up
                foreach ($round as $mode => $m) {
                    $data[$mode][] = $m;
                }
            }
        }
    } finally {
        proc_terminate($proc);
        proc_close($proc);
    }
    $records = 0;
    foreach (glob("$root/spool/*.ndjson") as $f) {
        $records += count(file($f));
    }
    $log = (string) @file_get_contents("$root/fpm.log");
    exec('rm -rf ' . escapeshellarg($root));
    if (count($data['off']) < $rounds / 2) {
        fwrite(STDERR, "too few answers from php-fpm (see its log)\n$log");
        exit(1);
    }
    report($data, $records);
}

function report(array $data, $records)
{
    $off = $data['off'];
    $endOff = pct(array_column($off, 1), 50);
    $wallOff = pct(array_column($off, 2), 50);
    $cpuOff = pct(array_column($off, 3), 50);
    // Per mode: fixed (start + end beyond the off end), and the paired
    // whole-request wall and CPU differences against the off request of the round.
    $fixed = $wall = $cpu = [];
    foreach ($data as $mode => $ms) {
        $fixed[$mode] = array_map(function ($m) use ($endOff) { return $m[0] + $m[1] - $endOff; }, $ms);
        $wall[$mode] = array_map(function ($m, $o) { return $m[2] - $o[2]; }, $ms, $off);
        $cpu[$mode] = array_map(function ($m, $o) { return $m[3] - $o[3]; }, $ms, $off);
    }
    printf("PHP-FPM %s, Excimer %s, profiler at 10 ms; %d rounds of %d modes on one worker, ~%.1f ms page (CPU %.1f ms); agent %s\n",
        PHP_VERSION, phpversion('excimer') ?: 'not installed', count($off), count($data), $wallOff / 1000,
        $cpuOff / 1000, realpath(getenv('BITVILLE_APM_BENCH_AGENT') ?: __DIR__ . '/../bitville-apm.php'));
    printf("%-30s %9s %9s %22s %14s %14s\n", 'mode', 'start us', 'end us', 'fixed us p25/p50/p75',
        'wall added us', 'CPU added us');
    foreach (MODES as $mode => list($label)) {
        printf("%-30s %9.1f %9.1f %22s %14s %14s\n", $label, pct(array_column($data[$mode], 0), 50),
            pct(array_column($data[$mode], 1), 50), $mode === 'off' ? '-' : sprintf('%.1f / %.1f / %.1f',
                pct($fixed[$mode], 25), pct($fixed[$mode], 50), pct($fixed[$mode], 75)),
            $mode === 'off' ? '-' : sprintf('%.1f', pct($wall[$mode], 50)),
            $mode === 'off' ? '-' : sprintf('%.1f', pct($cpu[$mode], 50)));
    }
    echo "(paired p50s; start: include and boot; end: from the end of the work to after finish())\n";
    foreach (['agent', 'at_once', 'none'] as $mode) {
        $floor = MODES[$mode][2];
        $above = pct($fixed[$mode], 50) - pct($fixed[$floor], 50);
        $ratio = ($wallOff + pct($wall[$mode], 50)) / $wallOff;
        $cpuRatio = ($cpuOff + pct($cpu[$mode], 50)) / max(1, $cpuOff);
        printf("%-30s above %s: fixed %.1f us, CPU %.1f us; ratio on/off: wall %.4f, CPU %.4f; targets (30 us, 1.01): %s, %s\n",
            MODES[$mode][0], $floor, $above, pct($cpu[$mode], 50) - pct($cpu[$floor], 50), $ratio, $cpuRatio,
            $above <= 30 ? 'met' : 'MISSED', $ratio <= 1.01 ? 'met' : 'MISSED');
    }
    printf("%d records kept; load average %.1f on %d CPUs\n", $records, sys_getloadavg()[0], (int) shell_exec('nproc'));
}

/** The modes in the order of round $i: each one first in turn. */
function rotate(array $modes, $i)
{
    $k = $i % count($modes);
    return array_merge(array_slice($modes, $k), array_slice($modes, 0, $k));
}

/** Iterations of the loop that take about 20 ms here (the fastest of several runs). */
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

/**
 * One FastCGI request; returns [start us, end us, whole request's wall us,
 * page CPU us], or null when the answer is not that.
 */
function request($socket, $script, $agent, $iterations, $mode, $config)
{
    $t = hrtime(true);
    $s = stream_socket_client('unix://' . $socket, $errno, $errstr, 5);
    if ($s === false) {
        return null;
    }
    $params = ['SCRIPT_FILENAME' => $script, 'SCRIPT_NAME' => '/work.php', 'REQUEST_URI' => '/work.php',
        'REQUEST_METHOD' => 'GET', 'GATEWAY_INTERFACE' => 'CGI/1.1', 'SERVER_PROTOCOL' => 'HTTP/1.1',
        'BITVILLE_BENCH_AGENT' => $agent, 'BITVILLE_BENCH_ITER' => (string) $iterations,
        'BITVILLE_BENCH_MODE' => $mode, 'BITVILLE_APM_CONFIG' => $config];
    $out = FastCgi\exchange($s, FastCgi\request($params));
    fclose($s);
    $wall = (hrtime(true) - $t) / 1e3;
    $answer = trim((string) substr($out, (int) strpos($out, "\r\n\r\n") + 4));
    if (!preg_match('/^(\d+) (\d+) (\d+)$/', $answer, $m)) {
        return null;
    }
    return [$m[1] / 1e3, $m[2] / 1e3, $wall, (float) $m[3]];
}

function pct(array $v, $p)
{
    sort($v);
    return $v[(int) min(count($v) - 1, floor($p / 100 * count($v)))];
}
