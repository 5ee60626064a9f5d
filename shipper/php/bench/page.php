<?php
/**
 * The page the PHP-FPM benchmarks serve (fpm.php, instructions.php): a loop
 * of BITVILLE_BENCH_ITER iterations, with, by BITVILLE_BENCH_MODE, nothing
 * else (off), a little arithmetic on floats (float), the agent (agent,
 * at_once, none), or only the calls any agent with its features must make
 * (floor; floor_none without Excimer): Excimer start
 * and stop, getrusage() at both ends, a shutdown function, error_get_last(),
 * one CSPRNG draw, getenv(). It answers "start end cpu": the ns of the
 * agent's include and boot, the ns from the end of the loop to its last
 * shutdown function (after the agent's finish()), and the us of CPU time
 * from its first statement to there (all of the worker's threads).
 */
$u0 = getrusage();
$t0 = hrtime(true);
$mode = $_SERVER['BITVILLE_BENCH_MODE'];
if ($mode === 'float') {
    // Nothing but what the agent's boot() did until it was moved to later:
    // on the test VM this much arithmetic on floats slowed the loop after it.
    $since = (int) ((microtime(true) - (float) $_SERVER['REQUEST_TIME_FLOAT']) * 1e9);
} elseif ($mode === 'floor' || $mode === 'floor_none') {
    $path = getenv('BITVILLE_APM_CONFIG');
    $e = null;
    if ($mode === 'floor') {
        $e = new ExcimerProfiler();
        $e->setPeriod(0.01);
        $e->start();
    }
    $u = getrusage();
    // By reference, so that the profiler is freed here, as the agent frees
    // its own in finish() (Excimer 1.2.4 and later end a thread then).
    register_shutdown_function(function () use (&$e) {
        if ($e !== null) {
            $e->stop();
            $e = null;
        }
        $last = error_get_last();
        $u = getrusage();
        $draw = random_int(0, 999999);
    });
} elseif ($mode !== 'off') { // agent, at_once, none
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