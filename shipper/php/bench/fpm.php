<?php
/**
 * The agent's fixed cost inside real PHP-FPM, where the main bench can only
 * stand in for it: every request forgets statics, the agent's files are
 * included per request (from opcache), and the config comes from the
 * compiled copy. Usage: php shipper/php/bench/fpm.php [requests]
 * (needs php-fpm8.2, or the binary named by PHP_FPM).
 *
 * Two pools with one worker each run the same ~20 ms script; the enabled
 * pool's config turns the agent on, the other's off. The script times the
 * agent's include and boot (its first statement), its own work, and, from a
 * shutdown function registered after the agent's, the time from the end of
 * its work to after the agent's finish(). Fixed cost = start + (end minus
 * the same end in the disabled pool). Requests alternate between the pools.
 * The sample rate is tiny, so the draw runs but no request is kept.
 * BITVILLE_APM_BENCH_AGENT names another copy of the agent to measure.
 */

const PER_REQUEST_SCRIPT = <<<'PHP'
<?php
$t0 = hrtime(true);
require $_SERVER['BITVILLE_BENCH_AGENT'];
$t1 = hrtime(true);
$n = (int) $_SERVER['BITVILLE_BENCH_ITER'];
$x = 0;
for ($i = 0; $i < $n; $i++) {
    $x = ($x + $i * 7) % 1000003;
}
$t2 = hrtime(true);
register_shutdown_function(function () use ($t0, $t1, $t2) {
    echo $t1 - $t0, ' ', hrtime(true) - $t2;
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
    foreach (['on' => 'true', 'off' => 'false'] as $pool => $enabled) {
        file_put_contents("$root/$pool.ini", "[general]\nenabled = $enabled\nthreshold_ms = 100000\n"
            . "project_name = bench\nsample_rate = 0.000001\n[profiling]\nprofiler = excimer\nperiod_ms = 10\n"
            . "[transmission]\nspool_dir = $root/spool\nstate_dir = $root/state\n");
        touch("$root/$pool.ini", time() - 60); // settled, so the compiled copy is made at once
    }
    $root0 = posix_getuid() === 0;
    $conf = "[global]\npid = $root/fpm.pid\nerror_log = $root/fpm.log\ndaemonize = no\n";
    foreach (['on', 'off'] as $pool) {
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
        for ($i = 0; $i < 100 && !(file_exists("$root/on.sock") && file_exists("$root/off.sock")); $i++) {
            usleep(50000);
        }
        $iterations = calibrate();
        $data = ['on' => [], 'off' => []];
        for ($i = 0; $i < $requests + 5; $i++) {
            foreach (($i % 2) ? ['on', 'off'] : ['off', 'on'] as $pool) {
                $m = request("$root/$pool.sock", "$root/work.php", $agent, $iterations);
                if ($m !== null && $i >= 5) { // the first ones compile and warm up
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
    $fixed = array_map(function ($m) use ($endOff) { return $m[0] + $m[1] - $endOff; }, $data['on']);
    printf("PHP-FPM %s, Excimer %s at 10 ms; %d requests per pool, ~20 ms each; agent %s\n", PHP_VERSION,
        phpversion('excimer') ?: 'not installed', count($data['on']), $agent);
    printf("%-24s %12s %12s %14s\n", 'pool', 'start us', 'end us', 'fixed us');
    printf("%-24s %12.1f %12.1f %14s\n", 'agent disabled', pct(array_column($data['off'], 0), 50), $endOff,
        sprintf('%.1f', pct(array_column($data['off'], 0), 50)));
    printf("%-24s %12.1f %12.1f %14s\n", 'enabled, fast (not kept)', pct(array_column($data['on'], 0), 50),
        pct(array_column($data['on'], 1), 50), sprintf('%.1f (p25 %.1f, p75 %.1f)', pct($fixed, 50), pct($fixed, 25),
        pct($fixed, 75)));
    printf("(start: include and boot; end: from the end of the work to after finish(); p50s; %d records kept)\n", $records);
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
 * One FastCGI request; returns [start us, end us] from the script's answer,
 * or null when the answer is not that.
 */
function request($socket, $script, $agent, $iterations)
{
    $s = stream_socket_client('unix://' . $socket, $errno, $errstr, 5);
    if ($s === false) {
        return null;
    }
    $params = ['SCRIPT_FILENAME' => $script, 'SCRIPT_NAME' => '/work.php', 'REQUEST_URI' => '/work.php',
        'REQUEST_METHOD' => 'GET', 'GATEWAY_INTERFACE' => 'CGI/1.1', 'SERVER_PROTOCOL' => 'HTTP/1.1',
        'BITVILLE_BENCH_AGENT' => $agent, 'BITVILLE_BENCH_ITER' => (string) $iterations];
    $body = '';
    foreach ($params as $k => $v) {
        $body .= lengthOf($k) . lengthOf($v) . $k . $v;
    }
    fwrite($s, record(1, pack('nCx5', 1, 0)) . record(4, $body) . record(4, '') . record(5, ''));
    $out = '';
    while (($h = fread($s, 8)) !== false && strlen($h) === 8) {
        $r = unpack('Cversion/Ctype/nid/nlength/Cpadding', $h);
        $content = '';
        while (strlen($content) < $r['length'] + $r['padding'] && !feof($s)) {
            $content .= fread($s, $r['length'] + $r['padding'] - strlen($content));
        }
        if ($r['type'] === 6) {
            $out .= substr($content, 0, $r['length']);
        } elseif ($r['type'] === 3) {
            break;
        }
    }
    fclose($s);
    $answer = trim((string) substr($out, (int) strpos($out, "\r\n\r\n") + 4));
    if (!preg_match('/^(\d+) (\d+)$/', $answer, $m)) {
        return null;
    }
    return [$m[1] / 1e3, $m[2] / 1e3];
}

function record($type, $content)
{
    return pack('CCnnCx', 1, $type, 1, strlen($content), 0) . $content;
}

function lengthOf($s)
{
    return strlen($s) < 128 ? chr(strlen($s)) : pack('N', strlen($s) | 0x80000000);
}

function pct(array $v, $p)
{
    sort($v);
    return $v[(int) min(count($v) - 1, floor($p / 100 * count($v)))];
}
