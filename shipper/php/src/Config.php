<?php
/**
 * The agent's settings, read from an INI file with [general], [profiling] and
 * [transmission] sections. Every key has a default; profiling.ini.example
 * documents each one. A missing or unreadable file, or one PHP cannot parse,
 * leaves the agent off: `$enabled` is false and `$problem` says why.
 */

namespace BitvilleApm;

final class Config
{
    const DEFAULT_PATH = '/etc/bitville-apm/profiling.ini';

    /** @var string The file read (or that would have been read). */
    public $path;
    /** @var string|null Why the agent is off when the file could not be used. */
    public $problem;

    // [general]
    public $enabled = false;          // Off unless a person turns it on.
    public $thresholdMs = 500.0;      // At or over this, a request gets a full record.
    public $projectName = '';         // BITVILLE_APM_PROJECT wins when defined.
    public $sampleRate = 0.1;         // Share of fast requests that get a summary record.

    // [profiling]
    public $profilerEnabled = true;
    public $profiler = 'auto';        // auto | excimer | xhprof | tideways | none
    public $periodMs = 10.0;          // Excimer period: 10 ms keeps the cost well under 1%.
    public $maxStacks = 200;          // Noise filter: heaviest stacks or edges kept.
    public $maxStackDepth = 64;       // Frames kept per Excimer stack (leaf side).
    public $excimerStop = 'between_ticks'; // Excimer < 1.2.4: wait for a quiet moment to stop (README).
    public $sqlEnabled = true;
    public $sqlBoundValues = true;    // false: params are null in every record.
    public $sqlMaxQueries = 200;      // Per request; the rest are only counted.
    public $sqlMaxLength = 8192;      // Bytes of statement text kept.
    public $sqlFramesDepth = 8;       // Calling frames kept per statement (0 = none).
    public $sqlKeepLiterals = false;  // Literals in stored SQL text become "?" (they may be secrets).
    public $sqlTagApplicationName = true;
    public $sqlComment = false;       // Prefix PDO statements with /* bitville='<id>' */.
    public $memoryEnabled = true;
    public $metadataEnabled = true;
    public $headers = ['host', 'user-agent', 'referer', 'accept', 'content-type', 'content-length',
        'x-forwarded-for', 'x-request-id'];
    public $redactPatterns = ['password', 'passwd', 'secret', 'token', 'auth', 'api key', 'session',
        'cookie', 'credit card', 'card number', 'cvv', 'iban', 'ssn'];
    public $maxValueLength = 256;     // Longer GET/POST/context values are cut.
    public $maxKeys = 50;             // Keys kept per map (GET, POST, headers, context).

    // [transmission]
    public $spoolDir = '/var/spool/bitville-apm';
    public $timeoutMs = 50.0;         // The agent's whole budget per request.
    public $maxRecordBytes = 524288;  // Over this, tails are trimmed.
    public $breakerFailures = 3;      // Consecutive write failures that open the breaker.
    public $breakerCooldownS = 60;    // How long writes are skipped once it is open.
    public $stateDir = '';            // Base of the private state folder; default: temp dir.

    /** Seconds a remembered config is trusted before its file is stat()ed again. */
    const REVALIDATE_S = 1;

    /**
     * Version of the compiled-config cache files, part of their name: bump
     * it whenever apply() or the properties change what a given INI file
     * turns into, so no agent reads a copy another one made. ConfigTest
     * fails until it is bumped after such a change. (A constant of this
     * class, so opcache folds it into the name at compile time.)
     */
    const CACHE_FORMAT = 5;

    /** @var array<string,array{0:string,1:Config,2:int}> Path => [file signature, config, checked at]. */
    private static $memo = [];

    /**
     * Loads the file named by BITVILLE_APM_CONFIG, else the default path.
     *
     * Every request pays for this, so it is cached at two levels, both keyed
     * by the file's signature (inode, size, mtime, ctime), the way opcache
     * revalidates scripts:
     * - In this process (a static): within the same second the config is
     *   trusted as is; after that one stat() decides whether the file
     *   changed, so an edit is seen within a second. This serves
     *   long-running processes.
     * - Across requests (FPM forgets statics between requests): the Config
     *   is compiled into a PHP file named by the signature, which opcache
     *   then serves from shared memory, so a request costs a stat() of the
     *   INI, of the cache directory and of that file, and an include,
     *   instead of parse_ini_file() and its validation. See cached().
     * The Config returned is shared: callers must not change it. A file that
     * cannot be used is never remembered or compiled.
     */
    public static function load($path = null)
    {
        if ($path === null || $path === '') {
            $env = getenv('BITVILLE_APM_CONFIG');
            $path = ($env !== false && $env !== '') ? $env : self::DEFAULT_PATH;
        }
        $now = time();
        $memo = isset(self::$memo[$path]) ? self::$memo[$path] : null;
        if ($memo !== null && $memo[2] === $now) {
            return $memo[1];
        }
        // The filesystem checks below never warn, except about open_basedir
        // when it shuts out the INI file or the temp dir: then, and only
        // then, they run under the error handler that swallows warnings.
        $basedir = ini_get('open_basedir');
        $guard = is_string($basedir) && $basedir !== '';
        if ($guard) {
            Util::mute();
        }
        try {
            $sig = null;
            $stable = false;
            try {
                // One stat(): is_file() never warns (open_basedir aside), and
                // the calls after it answer from PHP's stat cache. Only that cache
                // is dropped first (not the realpath cache), so a rewrite is seen.
                clearstatcache();
                if (is_file($path)) {
                    $mtime = filemtime($path);
                    $ctime = filectime($path);
                    $sig = fileinode($path) . '-' . filesize($path) . '-' . $mtime . '-' . $ctime;
                    if ($memo !== null && $memo[0] === $sig) {
                        self::$memo[$path] = [$sig, $memo[1], $now];
                        return $memo[1];
                    }
                    // A file changed in this very second may change again in it
                    // with the same signature (mtime and ctime count whole
                    // seconds): such a file is parsed again until its last change
                    // is in the past, as git does with "racily clean" entries.
                    $stable = max($mtime, $ctime) < $now;
                }
            } catch (\Throwable $e) {
                $sig = null;
            }
            $config = $stable ? self::cached($path, $sig) : null;
            if ($config === null) {
                $config = self::parse($path);
                if ($stable && $config->problem === null) {
                    self::compile($config, $sig);
                }
            }
            if ($stable && $config->problem === null) {
                self::$memo[$path] = [$sig, $config, $now];
            }
            return $config;
        } finally {
            if ($guard) {
                Util::unmute();
            }
        }
    }

    /** Forgets remembered configs, as a new FPM request does (tests and the benchmark). */
    public static function forget()
    {
        self::$memo = [];
    }

    /**
     * The compiled-INI cache directory, or null when there is none: the
     * agent's private folder in the temp dir (Util::privateDir(), which says
     * why it is checked: PHP includes the files in it). The write breaker
     * and drop counters live there too unless state_dir names another base.
     */
    public static function cacheDir()
    {
        // sys_get_temp_dir() never ends with a slash.
        return Util::privateDir(sys_get_temp_dir());
    }

    /**
     * The compiled file for an INI file with a given signature. The path's
     * CRC keeps copies of different INI files apart (and lets a new copy
     * find the old ones of the same file); the signature tells versions of
     * one file apart.
     */
    private static function cacheFile($dir, $path, $sig)
    {
        return $dir . '/config.' . crc32($path) . '.' . self::CACHE_FORMAT . '.' . $sig . '.php';
    }

    /**
     * The Config from the compiled cache, or null on a miss. The include is
     * served by opcache from shared memory when it is on (as under FPM); the
     * file holds the properties that differ from the defaults.
     *
     * @return Config|null
     */
    private static function cached($path, $sig)
    {
        $dir = self::cacheDir();
        if ($dir === null) {
            return null;
        }
        $file = self::cacheFile($dir, $path, $sig);
        try {
            // is_file() first: it never warns, and costs less than the error
            // handler an include of a missing file would need.
            $props = is_file($file) ? include $file : null;
            if (!is_array($props)) {
                return null;
            }
            $config = new self();
            $config->path = $path;
            foreach ($props as $name => $value) {
                $config->$name = $value;
            }
            return $config;
        } catch (\Throwable $e) {
            return null;
        }
    }

    /**
     * Writes the compiled copy of a Config read from an INI file: a
     * temporary file renamed into place, so no reader sees half of it, dated
     * in the past so that opcache caches it at once
     * (opcache.file_update_protection). Older copies for the same INI file
     * are removed. A failure leaves no file and costs only this request: the
     * next one parses the INI again.
     */
    private static function compile(Config $config, $sig)
    {
        $dir = self::cacheDir();
        if ($dir === null) {
            return false;
        }
        $props = [];
        $defaults = get_class_vars(self::class);
        foreach (get_object_vars($config) as $name => $value) {
            if ($name !== 'path' && $name !== 'problem' && $value !== $defaults[$name]) {
                $props[$name] = $value;
            }
        }
        $path = $config->path;
        $file = self::cacheFile($dir, $path, $sig);
        $tmp = $file . '.' . getmypid() . '.tmp';
        $code = "<?php\n// Bitville APM: the config read from " . str_replace(["\n", "\r", '?>'], ' ', $path)
            . "\n// (settings that differ from the defaults). Remade when that file changes; safe to delete.\nreturn "
            . var_export($props, true) . ";\n";
        Util::mute();
        try {
            $ok = file_put_contents($tmp, $code) === strlen($code) && touch($tmp, time() - 60)
                && rename($tmp, $file);
            if (!$ok) {
                unlink($tmp);
                return false;
            }
            foreach (glob($dir . '/config.' . crc32($path) . '.*') ?: [] as $old) {
                if ($old !== $file) {
                    unlink($old);
                }
            }
            return true;
        } catch (\Throwable $e) {
            return false;
        } finally {
            Util::unmute();
        }
    }

    /** Reads and validates the file, every time. */
    private static function parse($path)
    {
        $config = new self();
        $config->path = $path;
        Util::mute();
        try {
            // The reason is looked up only when parsing fails.
            // Raw: every value is the text written (quotes removed), typed by
            // its key below. The typed scanner would turn a bare none, off, no
            // or yes into a boolean for every key, strings too
            // (`project_name = none` became '').
            $ini = parse_ini_file($path, true, INI_SCANNER_RAW);
            if (!is_array($ini)) {
                $config->problem = 'config file ' . $path . (is_file($path) && is_readable($path)
                    ? ' cannot be parsed as INI' : ' is missing or unreadable');
                return $config;
            }
        } catch (\Throwable $e) {
            $config->problem = 'config file ' . $path . ' cannot be read';
            return $config;
        } finally {
            Util::unmute();
        }
        $config->apply($ini);
        return $config;
    }

    /**
     * Applies parsed INI sections. Values are coerced and clamped so that a typo
     * cannot make the agent unbounded (for example a negative cap).
     *
     * @param array $ini section => key => value
     */
    public function apply(array $ini)
    {
        $g = isset($ini['general']) && is_array($ini['general']) ? $ini['general'] : [];
        $p = isset($ini['profiling']) && is_array($ini['profiling']) ? $ini['profiling'] : [];
        $t = isset($ini['transmission']) && is_array($ini['transmission']) ? $ini['transmission'] : [];

        $this->enabled = self::bool($g, 'enabled', $this->enabled);
        $this->thresholdMs = self::num($g, 'threshold_ms', $this->thresholdMs, 0, 86400000);
        $this->projectName = self::str($g, 'project_name', $this->projectName);
        $this->sampleRate = self::num($g, 'sample_rate', $this->sampleRate, 0, 1);

        $this->profilerEnabled = self::bool($p, 'profiler_enabled', $this->profilerEnabled);
        // `off` (or no, false, 0, and false from an array given to apply())
        // means no profiler, as `none` does; an unknown name means auto.
        $profiler = isset($p['profiler']) && $p['profiler'] === false
            ? 'none' : strtolower(self::str($p, 'profiler', $this->profiler));
        $profiler = in_array($profiler, ['off', 'no', 'false', '0'], true) ? 'none' : $profiler;
        $this->profiler = in_array($profiler, ['auto', 'excimer', 'xhprof', 'tideways', 'none'], true)
            ? $profiler : 'auto';
        $this->periodMs = self::num($p, 'period_ms', $this->periodMs, 0.1, 10000);
        $this->maxStacks = (int) self::num($p, 'max_stacks', $this->maxStacks, 1, 10000);
        $this->maxStackDepth = (int) self::num($p, 'max_stack_depth', $this->maxStackDepth, 1, 1000);
        $stop = strtolower(self::str($p, 'excimer_stop', $this->excimerStop));
        $this->excimerStop = $stop === 'at_once' ? 'at_once' : 'between_ticks';
        $this->sqlEnabled = self::bool($p, 'sql_enabled', $this->sqlEnabled);
        $this->sqlBoundValues = self::bool($p, 'sql_bound_values', $this->sqlBoundValues);
        $this->sqlMaxQueries = (int) self::num($p, 'sql_max_queries', $this->sqlMaxQueries, 0, 100000);
        $this->sqlMaxLength = (int) self::num($p, 'sql_max_length', $this->sqlMaxLength, 64, 65536);
        $this->sqlFramesDepth = (int) self::num($p, 'sql_frames_depth', $this->sqlFramesDepth, 0, 64);
        $this->sqlKeepLiterals = self::bool($p, 'sql_keep_literals', $this->sqlKeepLiterals);
        $this->sqlTagApplicationName = self::bool($p, 'sql_tag_application_name', $this->sqlTagApplicationName);
        $this->sqlComment = self::bool($p, 'sql_comment', $this->sqlComment);
        $this->memoryEnabled = self::bool($p, 'memory_enabled', $this->memoryEnabled);
        $this->metadataEnabled = self::bool($p, 'metadata_enabled', $this->metadataEnabled);
        $this->headers = self::csv($p, 'headers', $this->headers, true);
        $this->redactPatterns = self::csv($p, 'redact_patterns', $this->redactPatterns, false);
        $this->maxValueLength = (int) self::num($p, 'max_value_length', $this->maxValueLength, 8, 65536);
        $this->maxKeys = (int) self::num($p, 'max_keys', $this->maxKeys, 1, 10000);

        $this->spoolDir = rtrim(self::str($t, 'spool_dir', $this->spoolDir), '/');
        $this->timeoutMs = self::num($t, 'timeout_ms', $this->timeoutMs, 1, 60000);
        $this->maxRecordBytes = (int) self::num($t, 'max_record_bytes', $this->maxRecordBytes, 4096, 16777216);
        $this->breakerFailures = (int) self::num($t, 'breaker_failures', $this->breakerFailures, 1, 1000);
        $this->breakerCooldownS = (int) self::num($t, 'breaker_cooldown_s', $this->breakerCooldownS, 1, 86400);
        $this->stateDir = rtrim(self::str($t, 'state_dir', $this->stateDir), '/');
    }

    /** The project from BITVILLE_APM_PROJECT or the config, or '' if it is not a valid name. */
    public function project()
    {
        $name = defined('BITVILLE_APM_PROJECT') ? (string) constant('BITVILLE_APM_PROJECT') : $this->projectName;
        return preg_match('/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/', $name) === 1 ? $name : '';
    }

    private static function bool(array $s, $key, $default)
    {
        if (!array_key_exists($key, $s)) {
            return $default;
        }
        $v = $s[$key];
        if (is_bool($v)) {
            return $v;
        }
        if (is_int($v) || is_float($v)) {
            return $v != 0;
        }
        $v = strtolower(trim((string) $v));
        if (in_array($v, ['1', 'true', 'on', 'yes'], true)) {
            return true;
        }
        if (in_array($v, ['0', 'false', 'off', 'no', 'none', ''], true)) {
            return false;
        }
        return $default;
    }

    private static function num(array $s, $key, $default, $min, $max)
    {
        if (!array_key_exists($key, $s) || !is_numeric($s[$key])) {
            return $default;
        }
        $v = (float) $s[$key];
        return $v < $min ? (float) $min : ($v > $max ? (float) $max : $v);
    }

    private static function str(array $s, $key, $default)
    {
        if (!array_key_exists($key, $s) || is_array($s[$key]) || $s[$key] === null) {
            return $default;
        }
        if (is_bool($s[$key])) {
            return $s[$key] ? '1' : '';
        }
        return trim((string) $s[$key]);
    }

    private static function csv(array $s, $key, array $default, $lower)
    {
        if (!array_key_exists($key, $s) || is_array($s[$key])) {
            return $default;
        }
        $out = [];
        foreach (explode(',', (string) $s[$key]) as $item) {
            $item = trim($item);
            if ($item !== '') {
                $out[] = $lower ? strtolower($item) : $item;
            }
        }
        return $out;
    }
}
