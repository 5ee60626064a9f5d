<?php
// The page the stress harness serves through php-fpm (and runs in CLI loops):
// it drives Excimer exactly as one agent mode does, around a little work of
// random length (mostly sleep, so many workers fit on two cores; wall-clock
// timers tick through sleep as through CPU work). Mode and period come from
// FastCGI parameters (or the CLI arguments of stress.php's loop).
//
// Modes:
//   none       no profiler (the control: deaths here are not Excimer's)
//   startstop  new ExcimerProfiler, start() at the request's start, stop() at
//              its end: timer_create + timer_delete per request (the agent
//              before issue #20)
//   nostop     start() at the start, flush() at the end without stop(): the
//              timer is deleted when PHP frees the object at request shutdown
//   quiet      the agent's own start and stop (src/Profiler.php): one timer
//              per request, deleted only between two ticks, when no tick is
//              in flight or due within 0.3 ms
//   agent      the agent itself (bitville-apm.php) with the config named by
//              BITVILLE_APM_CONFIG
function stress_leaf($us)
{
    $t = hrtime(true);
    $x = 0;
    while (hrtime(true) - $t < $us * 1000) {
        $x += crc32((string) $x);
    }
    return $x;
}

function stress_middle($sleepUs)
{
    usleep((int) ($sleepUs / 2));
    stress_leaf(mt_rand(20, 200));
    usleep((int) ($sleepUs / 2));
}

function stress_page($mode, $periodMs)
{
    // Up to two periods of sleep, so many requests end while a tick is due.
    $sleepUs = mt_rand(0, (int) (2000 * $periodMs));
    $samples = -1;
    if ($mode === 'quiet') {
        require_once __DIR__ . '/../src/Util.php';
        require_once __DIR__ . '/../src/Profiler.php';
        list($p, $t, $draw) = \BitvilleApm\Profiler::startExcimer($periodMs, 32);
        stress_middle($sleepUs);
        \BitvilleApm\Profiler::stopExcimer($p, $t, $periodMs, $draw);
        $samples = count($p->getLog());
    } elseif ($mode === 'startstop' || $mode === 'nostop') {
        $p = new ExcimerProfiler();
        $p->setPeriod($periodMs / 1000);
        $p->setMaxDepth(32);
        $p->start();
        stress_middle($sleepUs);
        if ($mode === 'startstop') {
            $p->stop();
            $samples = count($p->getLog());
        } else {
            $samples = count($p->flush());
        }
    } else {
        stress_middle($sleepUs);
    }
    return $samples;
}

if (PHP_SAPI !== 'cli') {
    $mode = isset($_SERVER['STRESS_MODE']) ? $_SERVER['STRESS_MODE'] : 'none';
    $period = isset($_SERVER['STRESS_PERIOD_MS']) ? (float) $_SERVER['STRESS_PERIOD_MS'] : 10.0;
    if ($mode === 'agent') {
        require $_SERVER['STRESS_AGENT'];
        stress_middle(mt_rand(0, (int) (2000 * $period)));
        echo "ok agent";
    } else {
        echo 'ok ', stress_page($mode, $period);
    }
}
