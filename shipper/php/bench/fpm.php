<?php
/**
 * The agent's cost inside real PHP-FPM (issue #20 "Done when"): every
 * request forgets statics, the agent's files are included per request (from
 * opcache), and the config comes from the compiled copy.
 * Usage: php shipper/php/bench/fpm.php [rounds]
 * (needs php-fpm8.2, or the binary named by PHP_FPM).
 *
 * One PHP-FPM worker serves the same ~20 ms page (page.php) in six modes,
 * interleaved in a rotating order, so every comparison is paired and no mode
 * gets a worker of its own (where the scheduler places a worker stays for a
 * run, which pairing across workers cannot undo):
 * - off: the page without the agent;
 * - floor: the page with only the calls any agent with these features must
 *   make, inline (page.php lists them), Excimer's start and stop among them;
 * - agent: the agent included and enabled, profiler = auto (Excimer in the
 *   chosen mode: stopped between ticks when older than 1.2.4) at 10 ms;
 * - at once: the same with excimer_stop = at_once;
 * - floor without Excimer, and the agent with profiler = none above it.
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

require __DIR__ . '/FpmBench.php';

use BitvilleApm\Bench\Fpm;

/** Mode => [label, config file (null: none), the floor it is compared with]. */
const MODES = [
    'off' => ['off (no agent)', null, null],
    'floor' => ['floor (unavoidable calls)', 'off', null],
    'agent' => ['agent, profiler = auto', 'between_ticks', 'floor'],
    'at_once' => ['agent, excimer_stop = at_once', 'at_once', 'floor'],
    'floor_none' => ['floor without Excimer', 'off', null],
    'none' => ['agent, profiler = none', 'none', 'floor_none'],
    'float' => ['off, with float arithmetic', null, null],
];

main(max(10, (int) ($argv[1] ?? 300)));

function main($rounds)
{
    $root = sys_get_temp_dir() . '/bitville-apm-fpm-bench-' . getmypid();
    Fpm\prepare($root);
    $proc = Fpm\start($root);
    $modes = array_keys(MODES);
    $data = array_fill_keys($modes, []);
    try {
        $iterations = Fpm\calibrate();
        for ($i = 0; $i < $rounds + 5; $i++) {
            $round = [];
            foreach (rotate($modes, $i) as $mode) {
                $config = MODES[$mode][1] === null ? '' : $root . '/' . MODES[$mode][1] . '.ini';
                $round[$mode] = Fpm\request($root, $iterations, $mode, $config);
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
    $endOff = Fpm\pct(array_column($off, 1), 50);
    $wallOff = Fpm\pct(array_column($off, 2), 50);
    $cpuOff = Fpm\pct(array_column($off, 3), 50);
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
        $cpuOff / 1000, Fpm\agent());
    printf("%-30s %9s %9s %22s %14s %14s\n", 'mode', 'start us', 'end us', 'fixed us p25/p50/p75',
        'wall added us', 'CPU added us');
    foreach (MODES as $mode => list($label)) {
        printf("%-30s %9.1f %9.1f %22s %14s %14s\n", $label, Fpm\pct(array_column($data[$mode], 0), 50),
            Fpm\pct(array_column($data[$mode], 1), 50), $mode === 'off' ? '-' : sprintf('%.1f / %.1f / %.1f',
                Fpm\pct($fixed[$mode], 25), Fpm\pct($fixed[$mode], 50), Fpm\pct($fixed[$mode], 75)),
            $mode === 'off' ? '-' : sprintf('%.1f', Fpm\pct($wall[$mode], 50)),
            $mode === 'off' ? '-' : sprintf('%.1f', Fpm\pct($cpu[$mode], 50)));
    }
    echo "(paired p50s; start: include and boot; end: from the end of the work to after finish())\n";
    foreach (['agent', 'at_once', 'none'] as $mode) {
        $floor = MODES[$mode][2];
        $above = Fpm\pct($fixed[$mode], 50) - Fpm\pct($fixed[$floor], 50);
        $ratio = ($wallOff + Fpm\pct($wall[$mode], 50)) / $wallOff;
        $cpuRatio = ($cpuOff + Fpm\pct($cpu[$mode], 50)) / max(1, $cpuOff);
        printf("%-30s above %s: fixed %.1f us, CPU %.1f us; ratio on/off: wall %.4f, CPU %.4f; targets (30 us, 1.01): %s, %s\n",
            MODES[$mode][0], $floor, $above, Fpm\pct($cpu[$mode], 50) - Fpm\pct($cpu[$floor], 50), $ratio, $cpuRatio,
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
