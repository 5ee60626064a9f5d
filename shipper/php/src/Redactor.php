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

    /**
     * SQL literals, and quoted identifiers (matched so that they are skipped):
     * "ident", E'C-style \' escapes', B'01' X'ff' U&'x' and standard 'it''s'
     * strings (a backslash is an ordinary character there), $tag$ dollar
     * quoting $tag$, and numbers that are not part of a name, a placeholder
     * ($1) or a cast.
     */
    const STRING_LITERAL = <<<'RE'
/[Ee]'(?:[^'\\]|''|\\.)*'|(?:[BbXx]|[Uu]&)?'(?:[^']|'')*'/s
RE;

    const LITERAL = <<<'RE'
/"(?:[^"]|"")*"|[Ee]'(?:[^'\\]|''|\\.)*'|(?:[BbXx]|[Uu]&)?'(?:[^']|'')*'|\$([A-Za-z_][A-Za-z0-9_]*|)\$.*?\$\1\$|(?<![A-Za-z0-9_$.:])[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?(?![A-Za-z_])/s
RE;

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
     *
     * Nested keys are also judged joined to their parents, as the form field
     * was named: `card[number]` arrives as ['card' => ['number' => ...]], and
     * only "card number" names the secret.
     */
    public function map($values, $depth = 0, $path = '')
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
            $joined = $path === '' ? (string) $k : $path . ' ' . $k;
            $secret = $this->isSecretKey($k) || ($path !== '' && $this->isSecretKey($joined));
            $out[(string) $k] = $secret ? self::MASK
                : (is_array($v) ? ($depth >= 2 ? '[array]' : $this->map($v, $depth + 1, $joined)) : $this->value($v, $depth));
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
     * Redacts SQL bound values. Each parameter is judged by its own name
     * (":password") and by the column it is compared with, assigned to or
     * inserted into, found with a cheap heuristic over the statement text
     * (`col = ?`, `col LIKE $2`, `col = md5(:p)`, `SET col = ?`, and
     * `INSERT INTO t (a, b) VALUES (?, md5(?))`). A parameter the heuristic
     * cannot place is masked when the statement names any secret-looking
     * identifier at all: over-redacting is the safe mistake.
     */
    public function sqlParams($sql, $params, $oneBased = false)
    {
        if (!is_array($params)) {
            return $params === null ? null : [$this->value($params)];
        }
        $sql = (string) $sql;
        $columns = null;
        $mentionsSecret = null;
        $out = [];
        $n = 0;
        foreach ($params as $k => $v) {
            if ($n++ >= $this->maxKeys) {
                break;
            }
            if ($columns === null) {
                $columns = self::placeholderColumns($sql);
            }
            if (is_int($k)) {
                // PDO numbers "?" from 1 in bindValue() and from 0 in execute([...]).
                $key = $oneBased ? $k - 1 : $k;
                $secret = false;
            } else {
                $name = ltrim((string) $k, ':');
                $key = ':' . $name;
                $secret = $this->isSecretKey($name);
            }
            if (!$secret) {
                if (isset($columns[$key])) {
                    $secret = $this->isSecretKey($columns[$key]);
                } else {
                    if ($mentionsSecret === null) {
                        $mentionsSecret = $this->mentionsSecret($sql);
                    }
                    $secret = $mentionsSecret;
                }
            }
            $out[$k] = $secret ? self::MASK : $this->value($v, 1);
        }
        return $out;
    }

    /** Whether any identifier in a statement looks secret (for parameters no column was found for). */
    private function mentionsSecret($sql)
    {
        if (strlen($sql) > 65536) {
            return true;
        }
        // Words only: the names of ":name" placeholders were judged already.
        preg_match_all('/(?<![:A-Za-z0-9_$])[A-Za-z_][A-Za-z0-9_]*/', $sql, $m);
        foreach (array_unique($m[0]) as $word) {
            if ($this->isSecretKey($word)) {
                return true;
            }
        }
        return false;
    }

    /** Kept for callers of the old name: positional placeholders only. */
    public static function positionalColumns($sql)
    {
        $out = [];
        foreach (self::placeholderColumns($sql) as $k => $col) {
            if (is_int($k)) {
                $out[$k] = $col;
            }
        }
        return $out;
    }

    /**
     * Maps placeholders to the column they are compared with, assigned to or
     * inserted into: 0-based positions for "?" (number i) and "$n" (n-1),
     * ":name" for named ones. A placeholder anywhere inside the expression
     * on the other side of the operator (up to a comma, a closing
     * parenthesis or AND/OR at its own depth) belongs to that column, so
     * `password = crypt(?, gen_salt('bf'))` is found.
     *
     * @return array<int|string,string>
     */
    public static function placeholderColumns($sql)
    {
        $columns = [];
        $len = strlen($sql);
        if ($len > 65536) {
            return $columns;
        }
        $ph = '(?:\?|\$[0-9]+|(?<!:):[A-Za-z_][A-Za-z0-9_]*)';
        if (!preg_match('/' . $ph . '/', $sql)) {
            return $columns;
        }
        $op = '(?:=|<>|!=|<=|>=|<|>|\s(?:NOT\s+)?I?LIKE\s|\s(?:NOT\s+)?IN\s*(?=\())';
        if (preg_match_all('/"?([A-Za-z_][A-Za-z0-9_]*)"?\s*' . $op . '\s*/i', $sql, $m,
            PREG_SET_ORDER | PREG_OFFSET_CAPTURE)) {
            foreach ($m as $match) {
                $start = $match[0][1] + strlen($match[0][0]);
                $end = self::expressionEnd($sql, $start);
                foreach (self::placeholdersIn($sql, $start, $end, $ph) as $key) {
                    if (!isset($columns[$key])) {
                        $columns[$key] = $match[1][0];
                    }
                }
            }
        }
        if (preg_match('/INSERT\s+INTO\s+\S+\s*\(([^)]*)\)\s*VALUES\s*\(/i', $sql, $ins, PREG_OFFSET_CAPTURE)) {
            $names = array_map(function ($c) {
                return trim(trim($c), '"');
            }, explode(',', $ins[1][0]));
            $at = $ins[0][1] + strlen($ins[0][0]);
            foreach ($names as $name) {
                $end = self::expressionEnd($sql, $at);
                foreach (self::placeholdersIn($sql, $at, $end, $ph) as $key) {
                    $columns[$key] = $name;
                }
                if ($end >= $len || $sql[$end] !== ',') {
                    break;
                }
                $at = $end + 1;
            }
        }
        return $columns;
    }

    /**
     * Where the expression starting at $i ends: at a comma or a closing
     * parenthesis at its own depth, at AND/OR/WHERE and friends at depth 0,
     * or at the end. Quoted strings are stepped over.
     */
    private static function expressionEnd($sql, $i)
    {
        $len = strlen($sql);
        $depth = 0;
        for (; $i < $len; $i++) {
            $c = $sql[$i];
            if ($c === "'") {
                $close = strpos($sql, "'", $i + 1);
                $i = $close === false ? $len : $close;
            } elseif ($c === '(') {
                $depth++;
            } elseif ($c === ')') {
                if ($depth === 0) {
                    return $i;
                }
                $depth--;
            } elseif ($c === ',' && $depth === 0) {
                return $i;
            } elseif ($depth === 0 && ($c === 'A' || $c === 'a' || $c === 'O' || $c === 'o' || $c === 'W' || $c === 'w'
                    || $c === 'R' || $c === 'r' || $c === 'L' || $c === 'l' || $c === 'G' || $c === 'g')
                && ($i === 0 || !ctype_alnum($sql[$i - 1]) && $sql[$i - 1] !== '_')
                && preg_match('/\G(?:AND|OR|WHERE|RETURNING|LIMIT|GROUP|ORDER)\b/i', $sql, $kw, 0, $i)) {
                return $i;
            }
        }
        return $len;
    }

    /** Placeholder keys between two offsets: positions for "?" and "$n", ":name" for named ones. */
    private static function placeholdersIn($sql, $start, $end, $ph)
    {
        $keys = [];
        $part = substr($sql, $start, $end - $start);
        if (preg_match_all('/' . $ph . '/', $part, $m, PREG_OFFSET_CAPTURE)) {
            foreach ($m[0] as $hit) {
                $p = $hit[0];
                $keys[] = $p[0] === ':' ? $p : self::placeholderIndex($sql, $p, $start + $hit[1]);
            }
        }
        return $keys;
    }

    /**
     * Redacts a database error message: the values PostgreSQL repeats in its
     * DETAIL lines. `Key (cols)=(vals)` keeps the values only when no column
     * looks secret; `Failing row contains (...)` and the values of
     * `invalid input syntax ...: "value"` are always masked, since nothing
     * says which column they belong to; quoted SQL literals are replaced.
     */
    public function error($message)
    {
        $message = (string) $message;
        $message = preg_replace_callback('/Key \(([^)]*)\)=\((.*?)\)( already exists| is not present| conflicts)/s',
            function ($m) {
                foreach (explode(',', $m[1]) as $col) {
                    if ($this->isSecretKey(trim($col, ' "'))) {
                        return 'Key (' . $m[1] . ')=(' . self::MASK . ')' . $m[3];
                    }
                }
                return $m[0];
            }, $message);
        $message = preg_replace('/Failing row contains \(.*\)/s', 'Failing row contains (' . self::MASK . ')', $message);
        $message = preg_replace('/(invalid input (?:syntax|value) for [^:]*: )"(?:[^"]|"")*"/', '$1"' . self::MASK . '"', $message);
        // Quoted strings only: numbers there are SQLSTATEs, positions and counts.
        $out = preg_replace(self::STRING_LITERAL, "'?'", $message);
        return is_string($out) ? $out : self::MASK;
    }

    /**
     * Replaces the literals of an SQL text with "?": quoted strings (with
     * their E'' and U&'' forms), dollar-quoted strings and numbers; quoted
     * identifiers, comments and placeholders stay. The fingerprint is the
     * same as the original's (literals and "?" both become $n there).
     */
    public static function scrubLiterals($sql)
    {
        $sql = (string) $sql;
        if (strpbrk($sql, "'$0123456789") === false) {
            return $sql;
        }
        $out = preg_replace_callback(self::LITERAL, function ($m) {
            return $m[0][0] === '"' ? $m[0] : '?';
        }, $sql);
        return is_string($out) ? $out : '?';
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
