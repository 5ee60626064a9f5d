<?php
/**
 * Small helpers shared by the agent: identifiers, timestamps and a way to run
 * filesystem calls without any warning reaching the application.
 *
 * PHP 7.4-compatible on purpose: this file runs inside users' production PHP.
 */

namespace BitvilleApm;

final class Util
{
    /** @var callable|null Error handler that swallows everything; built once. */
    private static $swallow;

    /** @var int How many mute() calls are open, so nested calls restore once. */
    private static $muteDepth = 0;

    /**
     * Installs an error handler that swallows every warning and notice.
     *
     * Why not `@`: the `@` operator still fills error_get_last(), which the
     * application (and our own shutdown function) reads to find fatal errors.
     * A user handler that returns true leaves error_get_last() untouched. The
     * application's own handler is restored by unmute(), so it never changes.
     */
    public static function mute()
    {
        if (self::$swallow === null) {
            self::$swallow = static function () {
                return true;
            };
        }
        set_error_handler(self::$swallow);
        self::$muteDepth++;
    }

    /** Restores the handler that was active before the matching mute(). */
    public static function unmute()
    {
        if (self::$muteDepth > 0) {
            self::$muteDepth--;
            restore_error_handler();
        }
    }

    /**
     * The agent's private folder under $base: `<base>/bitville-apm-<euid>`,
     * made 0700 on first use, or null when it cannot be trusted.
     *
     * Why the checks: the agent keeps files there that decide what it does
     * (compiled configs that PHP includes, the write breaker, drop counters),
     * and $base is usually the shared temp dir. A folder another local user
     * made first, or a symlink they planted, would let them run code as the
     * PHP user, silence the agent with a breaker dated in the future, or make
     * it append to a file of their choosing. So the folder must not be a
     * symlink, must belong to this process's user and be open to nobody
     * else (the sticky temp dir keeps others from renaming it). Checked at
     * every use, never remembered: temp dirs are cleaned, and the folder
     * could be made again by someone else. Without posix_geteuid() there is
     * no way to check, so there is no folder.
     *
     * @return string|null
     */
    public static function privateDir($base)
    {
        if (!function_exists('posix_geteuid') || !is_string($base) || $base === '') {
            return null;
        }
        $uid = posix_geteuid();
        $dir = rtrim($base, '/') . '/bitville-apm-' . $uid;
        try {
            // One lstat(): not followed, so a symlink shows as one. It warns
            // only when the folder is missing (and under open_basedir).
            self::mute();
            try {
                $st = lstat($dir);
                if ($st === false && mkdir($dir, 0700)) {
                    clearstatcache();
                    $st = lstat($dir);
                }
            } finally {
                self::unmute();
            }
            // A directory (not a symlink), this user's, open to nobody else.
            return is_array($st) && ($st['mode'] & 0170000) === 0040000 && $st['uid'] === $uid
                && ($st['mode'] & 0077) === 0 ? $dir : null;
        } catch (\Throwable $e) {
            return null;
        }
    }

    /**
     * A random UUID v4, lowercase. random_bytes() can throw when the system has
     * no entropy source; the fallback keeps the request going with a weaker ID.
     * mt_rand() is never used: it would shift the application's seeded sequence.
     */
    public static function uuid4()
    {
        try {
            $bytes = random_bytes(16);
        } catch (\Throwable $e) {
            $bytes = substr(hash('sha256', uniqid('', true) . getmypid() . microtime(), true), 0, 16);
        }
        $bytes[6] = chr((ord($bytes[6]) & 0x0f) | 0x40);
        $bytes[8] = chr((ord($bytes[8]) & 0x3f) | 0x80);
        $hex = bin2hex($bytes);
        return substr($hex, 0, 8) . '-' . substr($hex, 8, 4) . '-' . substr($hex, 12, 4) . '-'
            . substr($hex, 16, 4) . '-' . substr($hex, 20, 12);
    }

    /**
     * Formats a microtime() string ("0.12345600 1700000000") as RFC 3339 UTC with
     * exactly six fraction digits. The string form is exact, unlike a float.
     */
    public static function formatTs($microtime)
    {
        $parts = explode(' ', (string) $microtime);
        $seconds = isset($parts[1]) ? (int) $parts[1] : time();
        $fraction = isset($parts[0]) ? substr($parts[0], 2, 6) : '';
        $fraction = str_pad($fraction, 6, '0');
        return gmdate('Y-m-d\TH:i:s', $seconds) . '.' . $fraction . 'Z';
    }

    /** Cuts a string to at most $max bytes without splitting a UTF-8 character. */
    public static function truncate($value, $max)
    {
        $value = (string) $value;
        if (strlen($value) <= $max) {
            return $value;
        }
        $cut = substr($value, 0, $max);
        // Step back over a partial multi-byte sequence (continuation bytes 10xxxxxx).
        $i = strlen($cut);
        $back = 0;
        while ($i > 0 && $back < 4 && (ord($cut[$i - 1]) & 0xc0) === 0x80) {
            $i--;
            $back++;
        }
        if ($i > 0 && ord($cut[$i - 1]) >= 0xc0) {
            $i--;
        }
        return substr($cut, 0, $i);
    }
}
