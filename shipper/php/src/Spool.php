<?php
/**
 * Appends records to the spool directory the shipper tails, and protects the
 * request from a broken disk.
 *
 * - File name `php.<YYYYMMDDHH UTC>.<pid>.ndjson`: one file per process and
 *   hour, so writers never interleave and the shipper can tell writer and hour.
 * - One record = one line, written with one append. A short write (disk full)
 *   is cut back with ftruncate(), so no partial line is left behind.
 * - `.spool-full` present (raised by the shipper): the record is dropped and
 *   counted; the count rides on the next written record.
 * - After `breakerFailures` consecutive failures the breaker opens for
 *   `breakerCooldownS` seconds: while open, a request costs one stat().
 *
 * PHP keeps nothing between requests under FPM, so the breaker and the drop
 * counter live in small files in the agent's private folder
 * (`<state_dir or temp dir>/bitville-apm-<euid>`, see Util::privateDir()),
 * not in the spool dir, which may be the broken part. A folder that fails
 * the owner check is not used: another user could otherwise silence the
 * agent with a breaker dated in the future, or, through a symlink, make the
 * PHP user append to a file of their choosing. Without a usable folder the
 * breaker and the counter live in memory only (per process). A state file
 * that is a symlink is removed, never followed. Long-running processes also
 * keep a copy in memory to skip even the stat().
 *
 * Both counters are file sizes, grown by appending one byte per event: on
 * ext4, rewriting a small file in place (truncate, then write) forces a
 * flush at close and cost 5 ms per drop here, while an append costs 8 us.
 */

namespace BitvilleApm;

final class Spool
{
    const WRITER = 'php';
    const FULL_FLAG = '.spool-full';
    /** Counters stop growing here (bytes = events), so a counter file stays small. */
    const COUNTER_MAX = 65536;

    /** @var array<string,int> Breaker key => open-until (unix seconds), per process. */
    private static $openUntil = [];
    /** @var array<string,int> Breaker key => consecutive failures, per process. */
    private static $failures = [];
    /** @var array<string,int> Breaker key => drops counted in memory (no usable state folder). */
    private static $drops = [];

    private $dir;
    private $stateDir;
    private $breakerPath;
    private $dropsPath;
    private $failuresToOpen;
    private $cooldownS;
    /** @var string|null */
    private $stateFolder;
    /** @var string */
    private $memoryKey;

    public function __construct($dir, $stateDir, $failuresToOpen, $cooldownS)
    {
        // Paths are made on first use (statePaths()): a request that is not
        // kept never touches the spool, so it should not pay for them either.
        $this->dir = $dir;
        $this->stateDir = $stateDir;
        $this->failuresToOpen = $failuresToOpen;
        $this->cooldownS = $cooldownS;
    }

    /**
     * Breaker and drop-counter paths, made once: '' when there is no
     * trusted state folder (then both live in memory only). The in-memory
     * key is the breaker's path, or the spool dir's hash without a folder.
     */
    private function statePaths()
    {
        if ($this->breakerPath === null) {
            // Keyed by spool dir, so two applications with different spools on
            // one host do not share a breaker.
            $key = substr(md5($this->dir), 0, 12);
            Util::mute(); // open_basedir may shut out the base
            try {
                $dir = Util::privateDir($this->stateDir === '' ? sys_get_temp_dir() : $this->stateDir);
            } finally {
                Util::unmute();
            }
            $this->stateFolder = $dir;
            $this->breakerPath = $dir === null ? '' : $dir . '/' . $key . '.breaker';
            $this->dropsPath = $dir === null ? '' : $dir . '/' . $key . '.' . getmypid() . '.drops';
            $this->memoryKey = $dir === null ? 'memory:' . $key : $this->breakerPath;
        }
    }

    /** The state folder in use, or null when breaker and counters live in memory (for --check). */
    public function stateFolder()
    {
        $this->statePaths();
        return $this->stateFolder;
    }

    /** The file records go to right now. */
    public function currentPath()
    {
        return $this->dir . '/' . self::WRITER . '.' . gmdate('YmdH') . '.' . getmypid() . '.ndjson';
    }

    /**
     * Decides whether a record may be written now, before it is encoded.
     *
     * @return array{admit: bool, reason: string, dropped: int}
     *   reason is '' | 'breaker_open' | 'spool_full'; dropped is the number of
     *   records this process dropped since its last written record.
     */
    public function admit()
    {
        $this->statePaths();
        $now = time();
        $key = $this->memoryKey;
        if (isset(self::$openUntil[$key]) && self::$openUntil[$key] > $now) {
            $this->countDrop();
            return ['admit' => false, 'reason' => 'breaker_open', 'dropped' => 0];
        }
        Util::mute();
        try {
            if ($this->breakerPath !== '') {
                clearstatcache(true, $this->breakerPath);
                $until = filemtime($this->breakerPath);
                if ($until !== false && $until > $now) {
                    if (is_link($this->breakerPath)) {
                        unlink($this->breakerPath); // Never followed: not ours.
                    } else {
                        self::$openUntil[$key] = $until;
                        $this->countDropMuted();
                        return ['admit' => false, 'reason' => 'breaker_open', 'dropped' => 0];
                    }
                }
            }
            $flag = $this->dir . '/' . self::FULL_FLAG;
            clearstatcache(true, $flag);
            if (file_exists($flag)) {
                $this->countDropMuted();
                return ['admit' => false, 'reason' => 'spool_full', 'dropped' => 0];
            }
            if ($this->dropsPath === '') {
                $dropped = isset(self::$drops[$key]) ? self::$drops[$key] : 0;
            } else {
                clearstatcache(true, $this->dropsPath);
                $dropped = filesize($this->dropsPath);
            }
            return ['admit' => true, 'reason' => '', 'dropped' => is_int($dropped) ? $dropped : 0];
        } catch (\Throwable $e) {
            return ['admit' => true, 'reason' => '', 'dropped' => 0];
        } finally {
            Util::unmute();
        }
    }

    /**
     * Appends one line (the newline is added here) with a single write.
     *
     * @return bool whether the whole line is in the file
     */
    public function append($json)
    {
        $this->statePaths();
        $line = $json . "\n";
        $ok = false;
        Util::mute();
        try {
            $handle = fopen($this->currentPath(), 'ab');
            if ($handle !== false) {
                $stat = fstat($handle);
                $before = is_array($stat) ? $stat['size'] : null;
                // One write() for the whole line, whatever PHP's chunk default.
                stream_set_chunk_size($handle, strlen($line) + 1);
                $written = fwrite($handle, $line);
                $ok = $written === strlen($line);
                if (!$ok && $before !== null) {
                    ftruncate($handle, $before); // Leave no partial line.
                }
                $ok = fclose($handle) && $ok;
            }
            if ($ok) {
                $this->recordSuccess();
            } else {
                $this->recordFailure();
                $this->countDropMuted();
            }
        } catch (\Throwable $e) {
            $ok = false;
        } finally {
            Util::unmute();
        }
        return $ok;
    }

    /** Whether the breaker is open now (for --check). */
    public function breakerOpenUntil()
    {
        $this->statePaths();
        if ($this->breakerPath === '') {
            $until = isset(self::$openUntil[$this->memoryKey]) ? self::$openUntil[$this->memoryKey] : 0;
            return $until > time() ? $until : 0;
        }
        Util::mute();
        try {
            clearstatcache(true, $this->breakerPath);
            $until = filemtime($this->breakerPath);
            return ($until !== false && $until > time() && !is_link($this->breakerPath)) ? $until : 0;
        } finally {
            Util::unmute();
        }
    }

    /** Counts a record dropped before it reached append(). */
    public function countDrop()
    {
        $this->statePaths();
        Util::mute();
        try {
            $this->countDropMuted();
        } catch (\Throwable $e) {
            // The state dir is broken too: the drop goes uncounted, nothing else.
        } finally {
            Util::unmute();
        }
    }

    private function countDropMuted()
    {
        if ($this->dropsPath === '') {
            $k = $this->memoryKey;
            self::$drops[$k] = min(self::COUNTER_MAX, (isset(self::$drops[$k]) ? self::$drops[$k] : 0) + 1);
            return;
        }
        self::increment($this->dropsPath);
    }

    /**
     * Adds one to a counter file and returns the new count (0 if it cannot
     * be read). A symlink in its place is removed first, never followed.
     */
    private static function increment($path)
    {
        if ($path === '') {
            return 0;
        }
        clearstatcache(true, $path);
        if (is_link($path)) {
            unlink($path);
        }
        $n = filesize($path);
        $n = is_int($n) ? $n : 0;
        if ($n < self::COUNTER_MAX && file_put_contents($path, '.', FILE_APPEND) === 1) {
            $n++;
        }
        return $n;
    }

    /** A written record carried the drop count and closes the breaker. */
    private function recordSuccess()
    {
        // Runs muted (append()): unlink() of a missing file is one failed
        // syscall, cheaper than asking file_exists() first.
        if ($this->breakerPath !== '') {
            unlink($this->dropsPath);
            unlink($this->breakerPath);
            clearstatcache(true, $this->dropsPath);
            clearstatcache(true, $this->breakerPath);
        }
        unset(self::$openUntil[$this->memoryKey], self::$failures[$this->memoryKey], self::$drops[$this->memoryKey]);
    }

    /**
     * Counts a consecutive failure in the breaker file; at the threshold, its
     * mtime is set to the end of the cool-down, which is what admit() reads.
     */
    private function recordFailure()
    {
        $key = $this->memoryKey;
        // The memory copy counts on when the state dir cannot be written either.
        $memory = (isset(self::$failures[$key]) ? self::$failures[$key] : 0) + 1;
        $n = max(self::increment($this->breakerPath), $memory);
        self::$failures[$key] = $n;
        if ($n >= $this->failuresToOpen) {
            $until = time() + $this->cooldownS;
            if ($this->breakerPath !== '') {
                touch($this->breakerPath, $until);
            }
            self::$openUntil[$key] = $until;
        }
    }

    /** Forgets the in-memory breaker state (tests and the benchmark). */
    public static function resetMemory()
    {
        self::$openUntil = [];
        self::$failures = [];
        self::$drops = [];
    }
}
