<?php
/**
 * `php bitville-apm.php --check`: tells a person, in plain lines, what the
 * agent will do on this machine. Exit code 0 when it is on and can write,
 * 1 otherwise.
 */

namespace BitvilleApm;

final class Check
{
    /** @return int exit code */
    public static function run()
    {
        $ok = true;
        $config = Config::load();
        $env = getenv('BITVILLE_APM_CONFIG');
        $from = ($env !== false && $env !== '') ? 'from BITVILLE_APM_CONFIG' : 'default path';
        self::line('config', $config->path . ' (' . $from . ')'
            . ($config->problem !== null ? ': ' . $config->problem : ': read'));
        $on = $config->enabled && $config->problem === null;
        self::line('agent', $on ? 'ON' : 'OFF' . ($config->problem === null ? ' ([general] enabled is false)' : ''));
        $ok = $ok && $on;

        $project = $config->project();
        self::line('project', $project !== '' ? $project
            : 'MISSING: set [general] project_name or define BITVILLE_APM_PROJECT (letters, digits, _ . -)');
        self::line('threshold', $config->thresholdMs . ' ms; fast requests sampled at ' . $config->sampleRate);

        $excimer = phpversion('excimer');
        $found = [];
        if (is_string($excimer)) {
            $found[] = 'excimer ' . $excimer;
        }
        if (function_exists('xhprof_enable')) {
            $found[] = 'xhprof ' . phpversion('xhprof');
        }
        if (function_exists('tideways_xhprof_enable')) {
            $found[] = 'tideways_xhprof ' . phpversion('tideways_xhprof');
        }
        self::line('profilers installed', $found === [] ? 'none (timing, SQL and metadata still work)' : implode(', ', $found));
        $choice = $config->profilerEnabled ? $config->profiler : 'none';
        // --check runs in the CLI; what matters most is what web requests get.
        $resolved = $choice === 'none' ? null : Profiler::resolve($choice, 'fpm-fcgi');
        $cli = $choice === 'none' ? null : Profiler::resolve($choice, 'cli');
        self::line('profiler', $choice . ' -> ' . ($resolved === null ? 'none' : $resolved)
            . ($resolved === 'excimer' ? ', period ' . $config->periodMs . ' ms, one timer per request'
                . (Profiler::excimerIsSafe() ? '' : ($config->excimerStop === 'at_once' ? ', stopped at once (excimer_stop)'
                    : ', stopped between ticks')) : '')
            . ($cli !== $resolved ? '; CLI scripts: ' . ($cli === null ? 'none' : $cli) : ''));
        if ($resolved === 'excimer' && !Profiler::excimerIsSafe()) {
            self::line('note', 'Excimer ' . $excimer . ' predates the 1.2.4 timer rewrite: '
                . ($config->excimerStop === 'at_once'
                    ? 'with excimer_stop = at_once, a PHP-FPM worker recycled at pm.max_requests can die as it exits.'
                    : 'the agent stops its timer between ticks, measured crash-free under PHP-FPM (README, stress/).'));
        }
        if ($cli === 'excimer' && !Profiler::excimerIsSafe()) {
            self::line('WARNING', 'profiler = excimer also profiles CLI scripts with Excimer ' . $excimer . ', and a CLI'
                . ' process exits right after its request, where that Excimer can kill it (stress/: 1 to 6 in 300'
                . ' exits). auto leaves CLI scripts unprofiled.');
        }
        if ($cli === null && $resolved === 'excimer') {
            self::line('note', 'auto does not profile CLI scripts with Excimer ' . $excimer . ': a CLI process exits'
                . ' right after its request, where the glibc timer race of Excimer < 1.2.4 lies (upgrade to 1.2.4+,'
                . ' or set profiler = excimer to accept it).');
        } elseif ($resolved === null && $choice !== 'none' && $found === []) {
            self::line('note', 'no profiler installed: install Excimer (Debian: php-excimer) for function-level profiles.');
        }
        foreach (['xhprof' => 'xhprof_enable', 'tideways' => 'tideways_xhprof_enable'] as $kind => $fn) {
            if (function_exists($fn)) {
                self::line('WARNING', $kind . ' is loaded. It instruments every PHP call: measured behind PHP-FPM it'
                    . ' cost about 600 ns per call (a call-heavy 20 ms page ran 27 times slower), and loading the module'
                    . ' alone made calls 72% slower even with the agent off. '
                    . ($resolved === $kind ? 'It is in use because profiler = ' . $kind . ' was chosen explicitly.'
                        : 'auto never uses it; unload it unless you need it.'));
            }
        }

        $dir = $config->spoolDir;
        $writable = self::probe($dir);
        self::line('spool dir', $dir . ($writable === true ? ': writable' : ': NOT WRITABLE (' . $writable . ')'));
        $ok = $ok && $writable === true;
        Util::mute();
        $full = file_exists($dir . '/' . Spool::FULL_FLAG);
        Util::unmute();
        self::line('spool full flag', $full ? 'PRESENT: the shipper is behind, records are being dropped' : 'absent');
        $spool = new Spool($dir, $config->stateDir, $config->breakerFailures, $config->breakerCooldownS);
        $until = $spool->breakerOpenUntil();
        self::line('write breaker', $until > 0 ? 'OPEN until ' . gmdate('Y-m-d H:i:s', $until) . ' UTC' : 'closed');
        $folder = $spool->stateFolder();
        self::line('state folder', $folder !== null
            ? $folder . ' (private to this user: breaker and drop counters)'
            : 'NONE usable under ' . ($config->stateDir !== '' ? $config->stateDir : sys_get_temp_dir())
                . ' (bitville-apm-<uid> must be this user\'s, 0700, not a symlink): breaker and drop counters kept in memory only');
        Util::mute(); // open_basedir may shut out the temp dir
        $cache = Config::cacheDir();
        Util::unmute();
        self::line('config cache', $cache !== null
            ? $cache . ' (for this user; compiled configs, served by opcache when it is on)'
            : 'none: the INI is parsed at every FPM request (no posix_geteuid(), or no private dir in the temp dir)');
        self::line('budget', $config->timeoutMs . ' ms per request; records capped at ' . $config->maxRecordBytes . ' bytes');
        return $ok ? 0 : 1;
    }

    /** @return true|string true, or why the directory cannot take a file */
    private static function probe($dir)
    {
        Util::mute();
        try {
            if (!is_dir($dir)) {
                return 'missing or not a directory';
            }
            // Files starting with "." are never spool files, so the shipper ignores this one.
            $path = $dir . '/.bitville-apm-check.' . getmypid();
            if (file_put_contents($path, 'x') !== 1) {
                return 'cannot create a file';
            }
            unlink($path);
            return true;
        } finally {
            Util::unmute();
        }
    }

    private static function line($label, $text)
    {
        echo str_pad($label . ':', 22), $text, "\n";
    }
}
