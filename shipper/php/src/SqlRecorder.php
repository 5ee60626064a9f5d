<?php
/**
 * Collects the statements of one request, bounded: at most `sqlMaxQueries`
 * captured, the rest only counted; text, params and frames cut to size.
 *
 * Both capture paths (the Phalcon listener and the PDO subclass) call begin()
 * before the statement and end() after it. A begin() that never sees its end()
 * (the statement threw) is reported as failed when the request ends.
 */

namespace BitvilleApm;

final class SqlRecorder
{
    /** Distinct statement shapes counted per request; the rest go to fingerprints_dropped. */
    const MAX_FINGERPRINTS = 200;
    /** Raw texts remembered with their shape, so a repeated statement is not scrubbed again. */
    const MAX_SHAPE_CACHE = 2000;
    /** Bytes of a shape's text kept in the record. */
    const SHAPE_TEXT_BYTES = 1024;

    /** @var Config */
    private $config;
    /** @var Redactor */
    private $redactor;
    /** @var int hrtime (ns) of the request's start, the zero of start_ms. */
    private $originNs;
    /** @var array[] Captured statements, in start order. */
    private $queries = [];
    /** @var int[] Starts (ns) of captured statements still open, by index. */
    private $open = [];
    /** @var int */
    private $total = 0;
    /** @var int */
    private $dropped = 0;
    /** @var float Sum of durations of every statement, captured or not. */
    private $totalMs = 0.0;
    /**
     * @var array<string,array> Shape => [text, count, total ms, max ms,
     *   stored, frame or null]: every execution, captured or not, so an N+1
     *   loop of 5,000 statements is recognised with only 200 stored.
     */
    private $shapes = [];
    /** @var string[] The shape of each captured statement, by index. */
    private $queryShapes = [];
    /** @var array<string,string> Raw text => shape. */
    private $shapeOf = [];
    /** @var int Statements whose shape came after MAX_FINGERPRINTS others. */
    private $otherCount = 0;
    /** @var float */
    private $otherMs = 0.0;

    public function __construct(Config $config, Redactor $redactor, $originNs)
    {
        $this->config = $config;
        $this->redactor = $redactor;
        $this->originNs = $originNs;
    }

    /**
     * Marks a statement's start. Returns a token for end(): a captured
     * statement's index, or -1 (counted only) over the cap. The token always
     * carries timing, so total_ms covers every statement.
     *
     * @param string     $op      query | exec | execute | begin | commit | ...
     * @param string     $sql
     * @param mixed      $params  bound values, or null
     * @param mixed      $types   bind types, or null
     * @param string     $source  phalcon | pdo | other
     * @param bool       $oneBased positional params numbered from 1 (bindValue)
     * @param bool       $capture false: only count and time it (agent over budget)
     * @return array{0:int,1:int} [index or -1, start ns]
     */
    public function begin($op, $sql, $params, $types, $source, $oneBased = false, $capture = true)
    {
        $now = hrtime(true);
        $this->total++;
        $sql = (string) $sql;
        $c = $this->config;
        $store = $capture && count($this->queries) < $c->sqlMaxQueries;
        // The shape of every statement is counted, stored or not. A shape
        // seen first here takes the calling frame (one backtrace per shape).
        $shape = $this->shape($sql, $capture);
        $frames = null;
        if ($shape !== '' && !isset($this->shapes[$shape])) {
            if (count($this->shapes) >= self::MAX_FINGERPRINTS) {
                $shape = '';
            } else {
                // Over the budget too: one backtrace per shape, at most MAX_FINGERPRINTS.
                $frames = $c->sqlFramesDepth > 0 ? self::frames($store ? $c->sqlFramesDepth : 1) : [];
                $this->shapes[$shape] = [Util::truncate(self::shapeText($sql, $c->sqlKeepLiterals), self::SHAPE_TEXT_BYTES),
                    0, 0.0, 0.0, 0, isset($frames[0]) ? $frames[0] : null];
            }
        }
        if ($shape === '') {
            $this->otherCount++;
        } else {
            $this->shapes[$shape][1]++;
        }
        if (!$store) {
            $this->dropped++;
            return [-1, $now, $shape];
        }
        if ($shape !== '') {
            $this->shapes[$shape][4]++;
        }
        $query = [
            // Literals go before the text is kept (secrets typed into SQL);
            // the bound values below are judged against the original text.
            'sql' => Util::truncate($c->sqlKeepLiterals ? $sql : Redactor::scrubLiterals($sql), $c->sqlMaxLength),
            'op' => $op,
            'source' => $source,
            'start_ms' => round(max(0, $now - $this->originNs) / 1e6, 3),
            'duration_ms' => 0.0,
            'status' => 'failed',
        ];
        if ($params !== null) {
            $query['params'] = $c->sqlBoundValues ? $this->redactor->sqlParams($sql, $params, $oneBased) : null;
        }
        if (is_array($types)) {
            // Bind types are driver constants, not data: bounded, not redacted.
            $query['types'] = [];
            foreach (array_slice($types, 0, $c->maxKeys, true) as $k => $t) {
                $query['types'][$k] = is_scalar($t) ? $t : null;
            }
        }
        if ($c->sqlFramesDepth > 0) {
            $query['frames'] = $frames !== null ? $frames : self::frames($c->sqlFramesDepth);
        }
        $index = count($this->queries);
        $this->queries[] = $query;
        $this->queryShapes[] = $shape;
        $this->open[$index] = [$now, $shape];
        return [$index, $now, $shape];
    }

    /**
     * The grouping key of a statement: its text with literals replaced and
     * IN lists collapsed, remembered per raw text (an N+1 loop repeats one
     * text, so it is worked out once). Over budget ($capture false) with
     * the memory full, a new text is not worked out: '' (counted as other).
     */
    private function shape($sql, $capture)
    {
        if (isset($this->shapeOf[$sql])) {
            return $this->shapeOf[$sql];
        }
        if (!$capture && count($this->shapeOf) >= self::MAX_SHAPE_CACHE) {
            return '';
        }
        $shape = self::shapeText($sql, false);
        $shape = preg_replace('/\(\s*\?(?:\s*,\s*\?)+\s*\)/', '(?)', $shape);
        $shape = is_string($shape) ? trim(preg_replace('/\s+/', ' ', $shape)) : '';
        if (strlen($shape) > 4096) {
            $shape = md5($shape); // A key, not a text.
        }
        if (count($this->shapeOf) < self::MAX_SHAPE_CACHE && strlen($sql) <= 4096) {
            $this->shapeOf[$sql] = $shape;
        }
        return $shape;
    }

    /** A shape's text as recorded: literals replaced unless kept, IN lists collapsed. */
    private static function shapeText($sql, $keepLiterals)
    {
        $text = $keepLiterals ? $sql : Redactor::scrubLiterals($sql);
        $text = preg_replace('/\(\s*\?(?:\s*,\s*\?)+\s*\)/', '(?)', $text);
        return is_string($text) ? $text : '?';
    }

    /**
     * Marks a statement's end.
     *
     * @param array{0:int,1:int} $token from begin()
     * @param string|null        $error the exception message when it threw
     * @param int|null           $rows  rows returned or affected, when known
     */
    public function end(array $token, $error = null, $rows = null)
    {
        $ms = max(0, hrtime(true) - $token[1]) / 1e6;
        $this->totalMs += $ms;
        $shape = isset($token[2]) ? $token[2] : '';
        if ($shape !== '' && isset($this->shapes[$shape])) {
            $this->shapes[$shape][2] += $ms;
            if ($ms > $this->shapes[$shape][3]) {
                $this->shapes[$shape][3] = $ms;
            }
        } else {
            $this->otherMs += $ms;
        }
        $index = $token[0];
        if ($index < 0 || !isset($this->queries[$index])) {
            return;
        }
        unset($this->open[$index]);
        $q =& $this->queries[$index];
        $q['duration_ms'] = round($ms, 3);
        $q['status'] = $error === null ? 'ok' : 'failed';
        if ($error !== null) {
            $q['error'] = Util::truncate($this->redactor->error($error), 4096);
        }
        if (is_int($rows) && $rows >= 0) {
            $q['rows'] = $rows;
        }
    }

    /**
     * Closes every statement that never saw end(): it threw before the
     * framework's "after" hook. Its duration runs until now, an upper bound.
     */
    public function failOpen($reason)
    {
        foreach ($this->open as $index => $open) {
            $this->end([$index, $open[0], $open[1]], $reason);
        }
        $this->open = [];
    }

    /** How many statements were captured (stored before any trimming). */
    public function capturedCount()
    {
        return count($this->queries);
    }

    /** Whether any statement was seen. */
    public function isEmpty()
    {
        return $this->total === 0;
    }

    /**
     * The record's `sql` object. $maxQueries: how many statements to keep
     * (0 for summaries; fewer than were captured when the agent ran out of
     * time: then the heaviest, in start order). $maxShapes: how many shapes
     * to list, heaviest total time first.
     */
    public function toArray($maxQueries, $maxShapes)
    {
        $queries = $this->queries;
        $storedBy = null;
        if (count($queries) > $maxQueries) {
            $storedBy = [];
            if ($maxQueries <= 0) {
                $queries = [];
            } else {
                $durations = array_column($queries, 'duration_ms');
                arsort($durations, SORT_NUMERIC);
                $keep = array_slice(array_keys($durations), 0, $maxQueries);
                sort($keep);
                $kept = [];
                foreach ($keep as $i) {
                    $kept[] = $queries[$i];
                    $shape = $this->queryShapes[$i];
                    $storedBy[$shape] = (isset($storedBy[$shape]) ? $storedBy[$shape] : 0) + 1;
                }
                $queries = $kept;
            }
        }
        $shapes = $this->shapes;
        uasort($shapes, function ($a, $b) {
            return $b[2] <=> $a[2];
        });
        $fingerprints = [];
        $otherCount = $this->otherCount;
        $otherMs = $this->otherMs;
        foreach ($shapes as $key => $s) {
            if (count($fingerprints) >= $maxShapes) {
                $otherCount += $s[1];
                $otherMs += $s[2];
                continue;
            }
            // Stored in this record: when queries were cut, the kept ones only.
            $stored = $storedBy === null ? $s[4] : (isset($storedBy[$key]) ? $storedBy[$key] : 0);
            $f = ['sql' => $s[0], 'count' => $s[1], 'total_ms' => round($s[2], 3), 'max_ms' => round($s[3], 3),
                'stored' => $stored];
            if ($s[5] !== null) {
                $f['frame'] = $s[5];
            }
            $fingerprints[] = $f;
        }
        $out = [
            'queries' => $queries,
            'total_count' => $this->total,
            'dropped' => $this->dropped,
            'total_ms' => round($this->totalMs, 3),
            'not_stored' => $this->total - count($queries),
            'fingerprints' => $fingerprints,
        ];
        if ($otherCount > 0) {
            $out['fingerprints_dropped'] = $otherCount;
            $out['fingerprints_dropped_ms'] = round($otherMs, 3);
        }
        return $out;
    }

    /**
     * The application frames that issued the statement, innermost first. Each
     * frame is a place (file, line) and the function it is in, so the first one
     * is the line that called into the agent or the framework. Frames without a
     * file (internal, such as Phalcon's C code) are skipped; arguments are never
     * collected.
     */
    private static function frames($depth)
    {
        $trace = debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS, $depth + 8);
        // Skip up to and including the last frame that is a call into the agent.
        $first = 0;
        foreach ($trace as $i => $f) {
            if (isset($f['class']) && strncmp($f['class'], 'BitvilleApm\\', 12) === 0) {
                $first = $i;
            }
        }
        $frames = [];
        $count = count($trace);
        for ($i = $first; $i < $count && count($frames) < $depth; $i++) {
            if (!isset($trace[$i]['file'])) {
                continue;
            }
            $outer = isset($trace[$i + 1]) ? $trace[$i + 1] : null;
            $function = '{main}';
            if ($outer !== null && isset($outer['function'])) {
                $function = (isset($outer['class']) ? $outer['class'] . (isset($outer['type']) ? $outer['type'] : '::') : '')
                    . $outer['function'];
            }
            // Bounded as the schema says (a shape's frame: 4 KiB path, 512-byte name).
            $frames[] = [
                'file' => Util::truncate((string) $trace[$i]['file'], 4096),
                'line' => isset($trace[$i]['line']) ? min(1000000000, max(0, (int) $trace[$i]['line'])) : 0,
                'function' => Util::truncate($function, 512),
            ];
        }
        return $frames;
    }
}
