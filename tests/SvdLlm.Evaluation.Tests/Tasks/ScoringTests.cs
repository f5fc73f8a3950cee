using SvdLlm.Evaluation.Tasks;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;

namespace SvdLlm.Evaluation.Tests.Tasks;

/// <summary>
/// The lm-eval log-likelihood scorer against the naive float64 forward pass, its tokenization rule
/// (HFLM._encode_pair in lm_eval/models/huggingface.py) and the metrics (process_results / mean_stderr).
/// </summary>
public class ScoringTests
{
    [Fact]
    public void EncodePair_moves_trailing_whitespace_to_the_continuation_and_splits_the_joint_encoding()
    {
        using var dir = new TempDirectory();
        var (_, tok) = TinyLanguageModel.Create(dir.Sub("m"));
        var (ctx, cont) = LoglikelihoodScorer.EncodePair(tok, "Answer: ", "carbon", prefixToken: 999);
        Assert.Equal(tok.Encode("Answer:", addSpecialTokens: false), ctx);
        Assert.Equal(tok.Encode("Answer: carbon", addSpecialTokens: false)[ctx.Length..], cont);
        Assert.Equal("Answer: carbon", tok.Decode([.. ctx, .. cont]));

        // No special tokens anywhere (lm-eval's add_bos_token=False); an empty context becomes the prefix token.
        Assert.DoesNotContain(tok.BosTokenId!.Value, ctx);
        var (empty, whole) = LoglikelihoodScorer.EncodePair(tok, "", " The whale", prefixToken: 42);
        Assert.Equal(new[] { 42 }, empty);
        Assert.Equal(tok.Encode(" The whale", addSpecialTokens: false), whole);
    }

    [Fact]
    public void Log_likelihoods_of_a_fixture_item_match_the_reference_forward_pass()
    {
        using var dir = new TempDirectory();
        var (ckpt, tok) = TinyLanguageModel.Create(dir.Sub("m"));
        string path = dir.File("ARC-Easy-Test.jsonl");
        File.WriteAllText(path,
            """{"question":{"stem":"Which gas do plants absorb from the air?","choices":[{"text":"oxygen","label":"A"},{"text":"carbon dioxide","label":"B"},{"text":"the whale","label":"C"},{"text":"soap","label":"D"}]},"answerKey":"B"}""" + "\n" +
            """{"question":{"stem":"Call me","choices":[{"text":"Ishmael.","label":"A"},{"text":"later","label":"B"}]},"answerKey":"A"}""" + "\n");
        var items = ZeroShotTasks.Arc(path);
        using var model = ModelLoader.Load(ckpt.Directory);
        var scores = LoglikelihoodScorer.Score(model, tok, items, maxLength: 64);

        for (int i = 0; i < items.Count; i++)
        {
            for (int c = 0; c < items[i].Requests.Count; c++)
            {
                // Independent tokenization: the joint string split where the context's own encoding ends.
                string context = items[i].Requests[c].Context, continuation = items[i].Requests[c].Continuation;
                int[] ctx = tok.Encode(context, addSpecialTokens: false);
                int[] cont = tok.Encode(context + continuation, addSpecialTokens: false)[ctx.Length..];
                double expected = TinyLanguageModel.ReferenceLogLikelihood(ckpt, ctx, cont);
                double actual = scores.LogLikelihoods[i][c];
                // float32 forward vs float64 reference: ~1e-6 relative per logit, summed over a few tokens.
                Assert.True(Math.Abs(actual - expected) < 1e-4 * Math.Max(1, Math.Abs(expected)), $"item {i} choice {c}: {actual} vs {expected}");
            }
        }

        // acc and acc_norm from the same numbers, by hand: argmax of ll, and of ll / len(choice).
        string[][] choices = [["oxygen", "carbon dioxide", "the whale", "soap"], ["Ishmael.", "later"]];
        for (int i = 0; i < items.Count; i++)
        {
            var ll = scores.LogLikelihoods[i];
            int pred = Array.IndexOf(ll, ll.Max());
            var norm = ll.Select((v, c) => v / choices[i][c].Length).ToArray();
            int predNorm = Array.IndexOf(norm, norm.Max());
            Assert.Equal(pred == items[i].Gold ? 1.0 : 0.0, scores.Correct()[i]);
            Assert.Equal(predNorm == items[i].Gold ? 1.0 : 0.0, scores.CorrectNorm()[i]);
        }
    }

    [Fact]
    public void WinoGrande_partial_scores_only_the_suffix_given_each_filled_prefix()
    {
        using var dir = new TempDirectory();
        var (ckpt, tok) = TinyLanguageModel.Create(dir.Sub("m"));
        string path = dir.File("dev.jsonl");
        File.WriteAllText(path, """{"sentence": "The trophy does not fit into the suitcase because _ is too large.", "option1": "the trophy", "option2": "the suitcase", "answer": "1"}""" + "\n");
        var items = ZeroShotTasks.WinoGrande(path);
        using var model = ModelLoader.Load(ckpt.Directory);
        var scores = LoglikelihoodScorer.Score(model, tok, items, maxLength: 64);
        foreach (var (option, c) in new[] { ("the trophy", 0), ("the suitcase", 1) })
        {
            string context = "The trophy does not fit into the suitcase because " + option;
            int[] ctx = tok.Encode(context, addSpecialTokens: false);
            int[] cont = tok.Encode(context + " is too large.", addSpecialTokens: false)[ctx.Length..];
            double expected = TinyLanguageModel.ReferenceLogLikelihood(ckpt, ctx, cont);
            Assert.True(Math.Abs(scores.LogLikelihoods[0][c] - expected) < 1e-4 * Math.Max(1, Math.Abs(expected)), $"{scores.LogLikelihoods[0][c]} vs {expected}");
        }
    }

    [Fact]
    public void Batching_prefix_sharing_and_truncation_do_not_change_the_numbers()
    {
        using var dir = new TempDirectory();
        var (ckpt, tok) = TinyLanguageModel.Create(dir.Sub("m"));
        using var model = ModelLoader.Load(ckpt.Directory);
        // One-token continuations with a shared context: every choice is served by one sequence.
        var oneToken = new[] { "the", "a", "I", "to", "me", "ship", "whale", "is", "it" }.Where(s => tok.Encode(" " + s, addSpecialTokens: false).Length == 1).ToArray();
        Assert.True(oneToken.Length >= 2, "the tiny tokenizer should have single tokens for some common words");
        var items = new List<MultipleChoiceItem>
        {
            MultipleChoiceItem.SharedContext("x:1", "Call me Ishmael. Some years", oneToken, 0),
            MultipleChoiceItem.SharedContext("x:2", "The whale swam", [" toward the ship.", " soap", " toward the ship."], 2),
            MultipleChoiceItem.SharedContext("x:3", "", ["The whale", "Call me"], 1),
        };
        var one = LoglikelihoodScorer.Score(model, tok, items, maxLength: 64, itemsPerBatch: 1);
        var all = LoglikelihoodScorer.Score(model, tok, items, maxLength: 64, itemsPerBatch: 3);
        for (int i = 0; i < items.Count; i++)
        {
            for (int c = 0; c < items[i].Requests.Count; c++)
            {
                var (ctx, cont) = LoglikelihoodScorer.EncodePair(tok, items[i].Requests[c].Context, items[i].Requests[c].Continuation, tok.BosTokenId!.Value);
                double expected = TinyLanguageModel.ReferenceLogLikelihood(ckpt, ctx, cont);
                Assert.True(Math.Abs(one.LogLikelihoods[i][c] - expected) < 1e-4 * Math.Max(1, Math.Abs(expected)), $"item {i} choice {c}: {one.LogLikelihoods[i][c]} vs {expected}");
                Assert.True(Math.Abs(all.LogLikelihoods[i][c] - one.LogLikelihoods[i][c]) < 1e-5 * Math.Max(1, Math.Abs(expected)));
            }
        }
        Assert.Equal(one.LogLikelihoods[1][0], one.LogLikelihoods[1][2]); // duplicate requests, one computation

        // Left truncation: a window of maxLength tokens keeps the last ones, the continuation scored on that window.
        var longItem = MultipleChoiceItem.SharedContext("x:4", TinyLanguageModel.TrainingText[..120], [" the ship."], 0);
        var truncated = LoglikelihoodScorer.Score(model, tok, [longItem], maxLength: 16);
        var (lc, lk) = LoglikelihoodScorer.EncodePair(tok, longItem.Requests[0].Context, longItem.Requests[0].Continuation, 0);
        int[] window = [.. lc, .. lk];
        window = window[^16..];
        double reference = TinyLanguageModel.ReferenceLogLikelihood(ckpt, window[..^lk.Length], window[^lk.Length..]);
        Assert.True(Math.Abs(truncated.LogLikelihoods[0][0] - reference) < 1e-4 * Math.Max(1, Math.Abs(reference)));
    }

    [Fact]
    public void Acc_norm_divides_by_code_points_and_ties_go_to_the_first_choice()
    {
        var item = new MultipleChoiceItem("x:1", [new("c", " ab"), new("c", " 😀😀😀")], [2, 3], 1);
        // acc: -2 > -2.5 picks 0; acc_norm: -2/2 = -1 < -2.5/3 = -0.833 picks 1.
        var s = new MultipleChoiceScores([item], [[-2.0, -2.5]]);
        Assert.Equal(new[] { 0.0 }, s.Correct());
        Assert.Equal(new[] { 1.0 }, s.CorrectNorm());
        Assert.Equal(3, LoglikelihoodScorer.CodePoints("😀😀😀"));
        var tie = new MultipleChoiceScores([item with { Gold = 0 }], [[-1.0, -1.0]]);
        Assert.Equal(new[] { 1.0 }, tie.Correct());
    }

    [Fact]
    public void Mean_stderr_is_the_sample_standard_deviation_over_root_n()
    {
        // x = [1, 0, 1, 1]: mean 0.75, sample variance (3·0.0625 + 0.5625)/3 = 0.25, sd 0.5, stderr 0.5/2.
        Assert.Equal(0.75, Aggregation.Mean([1, 0, 1, 1]));
        Assert.Equal(0.25, Aggregation.MeanStderr([1, 0, 1, 1])!.Value, 12);
        Assert.Null(Aggregation.MeanStderr([1]));
    }
}
