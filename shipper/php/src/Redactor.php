<?php
/**
 * Redaction at the source: values whose key looks secret become "[REDACTED]"
 * before anything is encoded, so secrets never leave the PHP process.
 *
 * Keys and patterns are compared folded (lowercase, letters and digits only),
 * so the pattern "api key" matches apiKey, API-KEY and x_api_key alike. The
 * comparison is a substring test: over-redacting "author" is the safe mistake.
 */

namespace BitvilleApm;

final class Redactor
{
    const MASK = '[REDACTED]';

    /** @var string[]|null Folded patterns; folded on first use, since most requests never redact. */
    private $patterns;
    /** @var string[] Patterns as configured. */
    private $rawPatterns;
    /** @var int */
    private $maxValueLength;
    /** @var int */
    private $maxKeys;
    /** @var array<string,bool> Folded key => verdict, since the same keys recur. */
    private $cache = [];

    public function __construct(array $patterns, $maxValueLength, $maxKeys)
    {
        $this->rawPatterns = $patterns;
        $this->maxValueLength = $maxValueLength;
        $this->maxKeys = $maxKeys;
    }

    /** Whether a key names a secret. */
    public function isSecretKey($key)
    {
        $folded = self::fold((string) $key);
        if (isset($this->cache[$folded])) {
            return $this->cache[$folded];
        }
        if ($this->patterns === null) {
            $this->patterns = [];
            foreach ($this->rawPatterns as $p) {
                $pattern = self::fold($p);
                if ($pattern !== '') {
                    $this->patterns[] = $pattern;
                }
            }
        }
        $secret = false;
        foreach ($this->patterns as $p) {
            if (strpos($folded, $p) !== false) {
                $secret = true;
                break;
            }
        }
        if (count($this->cache) < 512) {
            $this->cache[$folded] = $secret;
        }
        return $secret;
    }

    /**
     * A redacted, bounded copy of a map: secret keys masked at any depth, long
     * strings cut, at most maxKeys keys per level (a "[truncated]" key counts the
     * rest) and three levels deep. Objects are not walked: only their class name
     * is kept, so no user __toString() or getter ever runs.
     */
    public function map($values, $depth = 0)
    {
        if (!is_array($values)) {
            return [];
        }
        $out = [];
        $n = 0;
        foreach ($values as $k => $v) {
            if ($n >= $this->maxKeys) {
                $out['[truncated]'] = count($values) - $n;
                break;
            }
            $n++;
            $out[(string) $k] = $this->isSecretKey($k) ? self::MASK : $this->value($v, $depth);
        }
        return $out;
    }

    /** One value, bounded the same way as map(). */
    public function value($v, $depth = 0)
    {
        if (is_string($v)) {
            return Util::truncate($v, $this->maxValueLength);
        }
        if ($v === null || is_bool($v) || is_int($v)) {
            return $v;
        }
        if (is_float($v)) {
            return is_finite($v) ? $v : null;
        }
        if (is_array($v)) {
            return $depth >= 2 ? '[array]' : $this->map($v, $depth + 1);
        }
        if (is_object($v)) {
            return '[object ' . get_class($v) . ']';
        }
        return '[' . gettype($v) . ']';
    }

    /**
     * Redacts query-string values whose key is secret in "path?query". The
     * rest of the URL is kept as sent.
     */
    public function url($url)
    {
        $url = (string) $url;
        $q = strpos($url, '?');
        if ($q === false) {
            return $url;
        }
        $pairs = explode('&', substr($url, $q + 1));
        foreach ($pairs as $i => $pair) {
            $eq = strpos($pair, '=');
            $key = urldecode($eq === false ? $pair : substr($pair, 0, $eq));
            if ($eq !== false && $this->isSecretKey($key)) {
                $pairs[$i] = substr($pair, 0, $eq + 1) . self::MASK;
            }
        }
        return substr($url, 0, $q + 1) . implode('&', $pairs);
    }

    /**
     * Redacts SQL bound values. Named parameters (":password", "password") are
     * judged by their name. Positional ones ("?", "$1") are judged by the column
     * they are compared with or inserted into, found with a cheap heuristic:
     * `col = ?`, `col LIKE $2`, and `INSERT INTO t (a, b) VALUES (?, ?)`.
     */
    public function sqlParams($sql, $params, $oneBased = false)
    {
        if (!is_array($params)) {
            return $params === null ? null : [$this->value($params)];
        }
        $positional = null;
        $out = [];
        $n = 0;
        foreach ($params as $k => $v) {
            if ($n++ >= $this->maxKeys) {
                break;
            }
            if (is_int($k)) {
                if ($positional === null) {
                    $positional = self::positionalColumns((string) $sql);
                }
                // PDO numbers "?" from 1 in bindValue() and from 0 in execute([...]).
                $index = $oneBased ? $k - 1 : $k;
                $column = isset($positional[$index]) ? $positional[$index] : '';
                $secret = $column !== '' && $this->isSecretKey($column);
            } else {
                $secret = $this->isSecretKey(ltrim((string) $k, ':'));
            }
            $out[$k] = $secret ? self::MASK : $this->value($v, 1);
        }
        return $out;
    }

    /**
     * Maps 0-based placeholder positions ("?" number i, or "$n" as n-1) to the
     * column names they are compared with or inserted into.
     *
     * @return array<int,string>
     */
    public static function positionalColumns($sql)
    {
        $columns = [];
        if (strlen($sql) > 65536) {
            return $columns;
        }
        $pattern = '/"?([A-Za-z_][A-Za-z0-9_]*)"?\s*(?:=|<>|!=|<=|>=|<|>|\s(?:NOT\s+)?I?LIKE\s)\s*(\?|\$[0-9]+)/i';
        if (preg_match_all($pattern, $sql, $m, PREG_SET_ORDER | PREG_OFFSET_CAPTURE)) {
            foreach ($m as $match) {
                $index = self::placeholderIndex($sql, $match[2][0], $match[2][1]);
                $columns[$index] = $match[1][0];
            }
        }
        if (preg_match('/INSERT\s+INTO\s+\S+\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)/i', $sql, $ins, PREG_OFFSET_CAPTURE)) {
            $names = array_map('trim', explode(',', $ins[1][0]));
            $values = array_map('trim', explode(',', $ins[2][0]));
            $offset = $ins[2][1];
            foreach ($values as $i => $value) {
                if (isset($names[$i]) && ($value === '?' || preg_match('/^\$[0-9]+$/', $value))) {
                    $at = strpos($sql, $value, $offset);
                    $index = self::placeholderIndex($sql, $value, $at === false ? $offset : $at);
                    $columns[$index] = trim($names[$i], '"');
                }
                $offset += strlen($value) + 1;
            }
        }
        return $columns;
    }

    /** 0-based position of a placeholder: "$3" is 2; a "?" counts the "?" before it. */
    private static function placeholderIndex($sql, $placeholder, $offset)
    {
        if ($placeholder[0] === '$') {
            return (int) substr($placeholder, 1) - 1;
        }
        return substr_count(substr($sql, 0, (int) $offset), '?');
    }

    /** Lowercase letters and digits only. */
    public static function fold($s)
    {
        return preg_replace('/[^a-z0-9]+/', '', strtolower((string) $s));
    }
}
