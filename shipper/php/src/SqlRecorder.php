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
        if (!$capture || count($this->queries) >= $this->config->sqlMaxQueries) {
            $this->dropped++;
            return [-1, $now];
        }
        $c = $this->config;
        $query = [
            // Literals go before the text is kept (secrets typed into SQL);
            // the bound values below are judged against the original text.
            'sql' => Util::truncate($c->sqlKeepLiterals ? (string) $sql : Redactor::scrubLiterals($sql), $c->sqlMaxLength),
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
            $query['frames'] = self::frames($c->sqlFramesDepth);
        }
        $index = count($this->queries);
        $this->queries[] = $query;
        $this->open[$index] = $now;
        return [$index, $now];
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
        foreach ($this->open as $index => $startNs) {
            $this->end([$index, $startNs], $reason);
        }
        $this->open = [];
    }

    /** Whether any statement was seen. */
    public function isEmpty()
    {
        return $this->total === 0;
    }

    /** The record's `sql` object; $withQueries false for summary records. */
    public function toArray($withQueries)
    {
        return [
            'queries' => $withQueries ? $this->queries : [],
            'total_count' => $this->total,
            'dropped' => $this->dropped,
            'total_ms' => round($this->totalMs, 3),
        ];
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
            $frames[] = [
                'file' => (string) $trace[$i]['file'],
                'line' => isset($trace[$i]['line']) ? max(0, (int) $trace[$i]['line']) : 0,
                'function' => $function,
            ];
        }
        return $frames;
    }
}
