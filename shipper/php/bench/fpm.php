<?php
/**
 * The agent's cost inside real PHP-FPM (issue #20 "Done when"): every
 * request forgets statics, the agent's files are included per request (from
 * opcache), and the config comes from the compiled copy.
 * Usage: php shipper/php/bench/fpm.php [requests]
 * (needs php-fpm8.2, or the binary named by PHP_FPM).
 *
 * Three pools with one worker each run the same ~20 ms page, interleaved
 * (on, off, floor, in a rotating order), so every comparison is paired:
 * - on: the agent included and enabled, profiler = auto (Excimer in the
 *   chosen mode: one timer per request, stopped between ticks) at 10 ms;
 * - off: the same page without the agent;
 * - floor: the page with only the calls any agent with these features
 *   must make, inline: Excimer start and stop, getrusage() at both ends,
 *   a shutdown function, error_get_last(), one CSPRNG draw, getenv().
 * The page times the agent's include and boot (its first statement), its
 * own work, and, from a shutdown function registered after the agent's, the
 * time from the end of its work to after the agent's finish(). Fixed cost =
 * start + (end minus the same end in the off pool). The client also times
 * each whole request (FastCGI round trip): added = on minus the off request
 * of the same pair. The sample rate is tiny, so the draw runs but no
 * request is kept. BITVILLE_APM_BENCH_AGENT names another copy of the agent;
 * BITVILLE_APM_BENCH_EXCIMER_STOP=at_once measures the agent without the
 * between-ticks stop (an Excimer older than 1.2.4 waits for a quiet moment).
 */

require __DIR__ . '/../tests/support/FastCgi.php';

use BitvilleApm\Tests\FastCgi;

const PER_REQUEST_SCRIPT = <<<'PHP'
<?php
$u0 = getrusage();
$t0 = hrtime(true);
if ($_SERVER['BITVILLE_BENCH_MODE'] === 'on') {
    require $_SERVER['BITVILLE_BENCH_AGENT'];
} elseif ($_SERVER['BITVILLE_BENCH_MODE'] === 'floor') {
    $path = getenv('BITVILLE_APM_CONFIG');
    $e = new ExcimerProfiler();
    $e->setPeriod(0.01);
    $e->start();
    $u = getrusage();
    register_shutdown_function(function () use ($e) {
        $e->stop();
        $last = error_get_last();
        $u = getrusage();
        $draw = random_int(0, 999999);
    });
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

main(max(10, (int) ($argv[1] ?? 300)));

function main($requests)
{
    $fpm = getenv('PHP_FPM') ?: 'php-fpm8.2';
    $agent = realpath(getenv('BITVILLE_APM_BENCH_AGENT') ?: __DIR__ . '/../bitville-apm.php');
    $root = sys_get_temp_dir() . '/bitville-apm-fpm-bench-' . getmypid();
    foreach (['spool', 'state', 'tmp'] as $dir) {
        mkdir("$root/$dir", 0777, true);
    }
    chmod("$root/tmp", 01777);
    file_put_contents("$root/work.php", PER_REQUEST_SCRIPT);
    foreach (['on' => 'true', 'off' => 'false', 'floor' => 'false'] as $pool => $enabled) {
        file_put_contents("$root/$pool.ini", "[general]\nenabled = $enabled\nthreshold_ms = 100000\n"
            . "project_name = bench\nsample_rate = 0.000001\n[profiling]\nprofiler = auto\nperiod_ms = 10\n"
            . 'excimer_stop = ' . (getenv('BITVILLE_APM_BENCH_EXCIMER_STOP') ?: 'between_ticks') . "\n"
            . "[transmission]\nspool_dir = $root/spool\nstate_dir = $root/state\n");
        touch("$root/$pool.ini", time() - 60); // settled, so the compiled copy is made at once
    }
    $root0 = posix_getuid() === 0;
    $conf = "[global]\npid = $root/fpm.pid\nerror_log = $root/fpm.log\ndaemonize = no\n";
    foreach (['on', 'off', 'floor'] as $pool) {
        $conf .= "[$pool]\n" . ($root0 ? "user = root\ngroup = root\n" : '')
            . "listen = $root/$pool.sock\npm = static\npm.max_children = 1\n"
            . "env[BITVILLE_APM_CONFIG] = $root/$pool.ini\n"
            . "php_admin_value[sys_temp_dir] = $root/tmp\nphp_admin_value[opcache.enable] = 1\n";
    }
    file_put_contents("$root/fpm.conf", $conf);
    $cmd = array_merge([$fpm, '-F', '-y', "$root/fpm.conf"], $root0 ? ['-R'] : []);
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$root/fpm.out", 'w'],
        2 => ['file', "$root/fpm.out", 'a']], $pipes);
    if (!is_resource($proc)) {
        fwrite(STDERR, "cannot start $fpm\n");
        exit(1);
    }
    try {
        for ($i = 0; $i < 100 && !(file_exists("$root/on.sock") && file_exists("$root/off.sock")
            && file_exists("$root/floor.sock")); $i++) {
            usleep(50000);
        }
        $iterations = calibrate();
        $data = ['on' => [], 'off' => [], 'floor' => []];
        $orders = [['on', 'off', 'floor'], ['off', 'floor', 'on'], ['floor', 'on', 'off']];
        for ($i = 0; $i < $requests + 5; $i++) {
            $round = [];
            foreach ($orders[$i % 3] as $pool) {
                $round[$pool] = request("$root/$pool.sock", "$root/work.php", $agent, $iterations, $pool);
            }
            if ($i >= 5 && !in_array(null, $round, true)) { // the first ones compile and warm up
                foreach ($round as $pool => $m) {
                    $data[$pool][] = $m;
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
    exec('rm -rf ' . escapeshellarg($root));
    if (count($data['on']) < $requests / 2 || count($data['off']) < $requests / 2) {
        fwrite(STDERR, "too few answers from php-fpm (see its log)\n");
        exit(1);
    }
    $endOff = pct(array_column($data['off'], 1), 50);
    $fixed = [];
    foreach (['on', 'floor'] as $pool) {
        $fixed[$pool] = array_map(function ($m) use ($endOff) { return $m[0] + $m[1] - $endOff; }, $data[$pool]);
    }
    // Paired whole-request differences: each on (or floor) request against the off request of its round.
    $added = [];
    foreach (['on', 'floor'] as $pool) {
        $added[$pool] = array_map(function ($m, $off) { return $m[2] - $off[2]; }, $data[$pool], $data['off']);
    }
    $above = array_map(function ($on, $floor) { return $on[2] - $floor[2]; }, $data['on'], $data['floor']);
    $wallOff = pct(array_column($data['off'], 2), 50);
    // CPU time of the whole script (getrusage() is exact to the microsecond
    // in total on Linux): unlike wall time it does not grow when the host is
    // busy, so it is the figure to compare across runs on a loaded machine.
    $cpu = [];
    foreach (['on', 'floor'] as $pool) {
        $cpu[$pool] = array_map(function ($m, $off) { return $m[3] - $off[3]; }, $data[$pool], $data['off']);
    }
    $cpuOff = pct(array_column($data['off'], 3), 50);
    printf("PHP-FPM %s, Excimer %s, profiler = auto at 10 ms, excimer_stop = %s; %d rounds of (on, off, floor),"
        . " ~%.1f ms page; agent %s\n",
        PHP_VERSION, phpversion('excimer') ?: 'not installed', getenv('BITVILLE_APM_BENCH_EXCIMER_STOP') ?: 'between_ticks',
        count($data['on']), $wallOff / 1000, $agent);
    printf("%-26s %10s %10s %24s %22s\n", 'pool', 'start us', 'end us', 'fixed us (p25/p50/p75)', 'added us, paired p50');
    printf("%-26s %10.1f %10.1f %24s %22s\n", 'off (no agent)', pct(array_column($data['off'], 0), 50), $endOff, '-', '-');
    foreach (['floor' => 'floor (unavoidable calls)', 'on' => 'agent on (Excimer)'] as $pool => $label) {
        printf("%-26s %10.1f %10.1f %24s %22.1f\n", $label, pct(array_column($data[$pool], 0), 50),
            pct(array_column($data[$pool], 1), 50),
            sprintf('%.1f / %.1f / %.1f', pct($fixed[$pool], 25), pct($fixed[$pool], 50), pct($fixed[$pool], 75)),
            pct($added[$pool], 50));
    }
    printf("CPU per request: off %.0f us; added, paired p50: floor %.1f us, agent on %.1f us, agent above the floor %.1f us (ratio on/off %.4f)\n",
        $cpuOff, pct($cpu['floor'], 50), pct($cpu['on'], 50), pct($cpu['on'], 50) - pct($cpu['floor'], 50),
        ($cpuOff + pct($cpu['on'], 50)) / max(1, $cpuOff));
    $ratio = ($wallOff + pct($added['on'], 50)) / $wallOff;
    printf("agent above the floor: fixed %.1f us (p50 of fixed on minus p50 of fixed floor), paired whole request %.1f us\n",
        pct($fixed['on'], 50) - pct($fixed['floor'], 50), pct($above, 50));
    printf("ratio on/off on this page: %.4f (paired p50 added %.1f us on a %.1f ms request)\n", $ratio,
        pct($added['on'], 50), $wallOff / 1000);
    printf("targets: at most 30 us above the floor: %s; ratio <= 1.01: %s\n",
        pct($fixed['on'], 50) - pct($fixed['floor'], 50) <= 30 ? 'met' : 'MISSED', $ratio <= 1.01 ? 'met' : 'MISSED');
    printf("(start: include and boot; end: from the end of the work to after finish(); %d records kept)\n", $records);
    printf("load average: %.1f on %d CPUs\n", sys_getloadavg()[0], (int) shell_exec('nproc'));
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
 * One FastCGI request; returns [start us, end us] from the script's answer
 * and the whole request's wall time in us, or null when the answer is not that.
 */
function request($socket, $script, $agent, $iterations, $mode)
{
    $t = hrtime(true);
    $s = stream_socket_client('unix://' . $socket, $errno, $errstr, 5);
    if ($s === false) {
        return null;
    }
    $params = ['SCRIPT_FILENAME' => $script, 'SCRIPT_NAME' => '/work.php', 'REQUEST_URI' => '/work.php',
        'REQUEST_METHOD' => 'GET', 'GATEWAY_INTERFACE' => 'CGI/1.1', 'SERVER_PROTOCOL' => 'HTTP/1.1',
        'BITVILLE_BENCH_AGENT' => $agent, 'BITVILLE_BENCH_ITER' => (string) $iterations,
        'BITVILLE_BENCH_MODE' => $mode];
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
